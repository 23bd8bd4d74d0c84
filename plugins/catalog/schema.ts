/**
 * The catalog plugin's tables. Prices are integers in minor units. Full-text search lives beside
 * these tables in hand-written migrations (an FTS5 table on SQLite, a tsvector column on PostgreSQL):
 * see search.ts.
 */
import { table } from '../../kernel/db/schema'

export const schema = {
  /** A tree: `parentId` null is a root. */
  categories: table(
    'catalog_categories',
    (c) => ({
      id: c.id(),
      slug: c.text('slug').notNull(),
      name: c.text('name').notNull(),
      parentId: c.text('parent_id'),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [c.uniqueIndex('catalog_categories_slug').on(t.slug), c.index('catalog_categories_parent').on(t.parentId)],
  ),
  products: table(
    'catalog_products',
    (c) => ({
      id: c.id(),
      sku: c.text('sku').notNull(),
      name: c.text('name').notNull(),
      description: c.text('description').notNull(),
      price: c.bigint('price').notNull(),
      currency: c.text('currency').notNull(),
      categoryId: c.text('category_id'),
      attributes: c.json<Record<string, unknown>>('attributes').notNull(),
      active: c.boolean('active').notNull(),
      /** Units available across warehouses: the sum of `stock` for this SKU, kept here so filters need no join. */
      available: c.integer('available').notNull().default(0),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    // One index per sort order, each ending in id: keyset pages walk them without sorting.
    (c) => (t) => [
      c.uniqueIndex('catalog_products_sku').on(t.sku),
      c.index('catalog_products_newest').on(t.createdAt, t.id),
      c.index('catalog_products_price').on(t.price, t.id),
      c.index('catalog_products_name').on(t.name, t.id),
      // Per category, in each sort order: a category's first page is read off these, not sorted.
      c.index('catalog_products_category').on(t.categoryId, t.createdAt, t.id),
      c.index('catalog_products_category_price').on(t.categoryId, t.price, t.id),
      c.index('catalog_products_category_name').on(t.categoryId, t.name, t.id),
    ],
  ),
  /**
   * A projection of inventory's stock, fed by `inventory.stock.changed`: what is available per SKU
   * and warehouse. `eventId` (UUIDv7, time-ordered) lets an older event arriving late change nothing.
   */
  stock: table(
    'catalog_stock',
    (c) => ({
      sku: c.text('sku').notNull(),
      warehouse: c.text('warehouse').notNull(),
      available: c.integer('available').notNull(),
      eventId: c.text('event_id').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.sku, t.warehouse] })],
  ),
}

export type CatalogSchema = typeof schema

/**
 * PostgreSQL only, and not in `schema`: a narrow copy of what relevance ranking reads (the tsvector,
 * not declared here, and the filter columns), written by triggers on catalog_products in
 * migrations/postgres/0004_search_copy.sql. search.ts ranks over it and reads full rows for one page.
 */
export const searchCopy = table('catalog_search', (c) => ({
  id: c.id(),
  active: c.boolean('active').notNull(),
  categoryId: c.text('category_id'),
  price: c.bigint('price').notNull(),
  /** `available > 0` of the product. */
  inStock: c.boolean('in_stock').notNull(),
}))
