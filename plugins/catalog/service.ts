/**
 * The catalog: a category tree and products with integer prices. No HTTP here: routes.ts translates
 * requests into these calls, and plugin.ts offers `getProducts` to other plugins. Every change of a
 * product is announced (`catalog.product.changed`) in the transaction that made it. Uniqueness
 * (slug, SKU) is settled by unique keys; tree moves by locking the tree (see checkMove).
 */
import { and, eq, gt, inArray, or, sql } from 'drizzle-orm'
import type { Database, Db, Params, Reader, Tables } from '../../kernel/db'
import { isUniqueViolation } from '../../kernel/db/errors'
import type { PluginContext } from '../../kernel/plugin'
import type { Product } from '../../shared/contracts/catalog'
import { Conflict, Invalid, NotFound } from '../../shared/errors'
import { type SkuLocks, totalAvailable } from './events'
import type { CatalogSchema } from './schema'

type T = Tables<CatalogSchema>
export type CategoryRow = T['categories']['$inferSelect']
export type ProductRow = T['products']['$inferSelect']

export interface CategoryView {
  id: string
  slug: string
  name: string
  parentId: string | null
  createdAt: string
  updatedAt: string
}

export type ProductView = Product & { available: number }

export const toProductView = (p: ProductRow): ProductView => ({ ...toProduct(p), available: p.available })

export const toCategoryView = (c: CategoryRow): CategoryView => ({
  id: c.id,
  slug: c.slug,
  name: c.name,
  parentId: c.parentId,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
})

export const toProduct = (p: ProductRow): Product => ({
  id: p.id,
  sku: p.sku,
  name: p.name,
  description: p.description,
  price: p.price,
  currency: p.currency,
  categoryId: p.categoryId,
  attributes: p.attributes,
  active: p.active,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
})

const CURRENCIES = new Set(Intl.supportedValuesOf('currency'))

export interface NewCategory {
  slug: string
  name: string
  parentId?: string | null
}
export interface CategoryChange {
  slug?: string
  name?: string
  parentId?: string | null
}
export interface NewProduct {
  sku: string
  name: string
  description?: string
  price: number
  currency: string
  categoryId?: string | null
  attributes?: Record<string, unknown>
  active?: boolean
}
export type ProductChange = Partial<Omit<NewProduct, 'sku'>>

export class CatalogService {
  private readonly t: T
  /** What every cart and checkout asks for (catalog.getProducts), built once. */
  private readonly productBySku

  constructor(
    private readonly db: Database,
    tables: T,
    private readonly events: PluginContext['events'],
    /** Taken before a product is created (events.ts, skuLocks). */
    private readonly lockSkus: SkuLocks,
  ) {
    this.t = tables
    const { products } = tables
    this.productBySku = db.prepare('catalog.productBySku', (q, p: Params<{ sku: string }>) => q.select().from(products).where(eq(products.sku, p('sku'))))
  }

  // ---------------------------------------------------------------------------------------------
  // categories
  // ---------------------------------------------------------------------------------------------

  async createCategory(input: NewCategory): Promise<CategoryView> {
    const { categories } = this.t
    const now = new Date()
    return this.db.transaction(async (tx) => {
      if (input.parentId) await this.requireCategory(tx, input.parentId, '/parentId')
      const [row] = await tx
        .insert(categories)
        .values({ id: Bun.randomUUIDv7(), slug: input.slug, name: input.name.trim(), parentId: input.parentId ?? null, createdAt: now, updatedAt: now })
        .onConflictDoNothing()
        .returning()
      if (!row) throw new Conflict(`a category with slug ${input.slug} exists`, 'SLUG_TAKEN')
      return toCategoryView(row)
    })
  }

  listCategories(filter: { parentId?: string | null }, limit: number, after?: string) {
    const { categories } = this.t
    return this.db.read
      .select()
      .from(categories)
      .where(
        and(
          filter.parentId === null ? sql`${categories.parentId} is null` : filter.parentId ? eq(categories.parentId, filter.parentId) : undefined,
          after ? gt(categories.id, after) : undefined,
        ),
      )
      .orderBy(categories.id)
      .limit(limit)
  }

  /** By id or by slug. */
  async getCategory(idOrSlug: string): Promise<CategoryView> {
    const row = await this.findCategory(this.db.read, idOrSlug)
    if (!row) throw new NotFound(`no category ${idOrSlug}`, 'CATEGORY_NOT_FOUND')
    return toCategoryView(row)
  }

  /** Renames, re-slugs or moves a category; a move under itself or one of its descendants is a 422. */
  async updateCategory(idOrSlug: string, change: CategoryChange): Promise<CategoryView> {
    const { categories } = this.t
    return this.db.transaction(async (tx) => {
      const current = await this.findCategory(tx, idOrSlug)
      if (!current) throw new NotFound(`no category ${idOrSlug}`, 'CATEGORY_NOT_FOUND')
      const set: Partial<CategoryRow> = { updatedAt: new Date() }
      if (change.name !== undefined) set.name = change.name.trim()
      if (change.slug !== undefined) set.slug = change.slug
      if (change.parentId !== undefined && change.parentId !== current.parentId) {
        if (change.parentId !== null) await this.checkMove(tx, current.id, change.parentId)
        set.parentId = change.parentId
      }
      try {
        const [row] = await tx.update(categories).set(set).where(eq(categories.id, current.id)).returning()
        return toCategoryView(row!)
      } catch (error) {
        if (isUniqueViolation(error)) throw new Conflict(`a category with slug ${change.slug} exists`, 'SLUG_TAKEN')
        throw error
      }
    })
  }

  /**
   * A category may not move under itself or its own descendants. On PostgreSQL every category row
   * is locked first (in id order, so two moves never deadlock): two moves that are each fine alone
   * but together make a cycle are then decided one after the other. SQLite runs one writer anyway.
   */
  private async checkMove(tx: Db, id: string, parentId: string) {
    const { categories } = this.t
    const lock = tx.select({ id: categories.id, parentId: categories.parentId }).from(categories).orderBy(categories.id)
    const tree = this.db.dialect === 'postgres' ? await lock.for('update') : await lock
    const parentOf = new Map(tree.map((c) => [c.id, c.parentId]))
    if (!parentOf.has(parentId)) throw new Invalid(`no category ${parentId}`, [{ path: '/parentId', message: 'unknown category' }], 'CATEGORY_NOT_FOUND')
    // The tree is small (hundreds of nodes): walking up from the new parent in memory is one query.
    for (let at: string | null | undefined = parentId, steps = 0; at && steps <= parentOf.size; at = parentOf.get(at), steps++)
      if (at === id)
        throw new Invalid('a category cannot be moved under itself or one of its descendants', [{ path: '/parentId', message: 'would make a cycle' }], 'CATEGORY_CYCLE')
  }

  private async findCategory(db: Reader | Db, idOrSlug: string): Promise<CategoryRow | undefined> {
    const { categories } = this.t
    const rows = await db
      .select()
      .from(categories)
      .where(or(eq(categories.id, idOrSlug), eq(categories.slug, idOrSlug)))
    return rows.find((r) => r.id === idOrSlug) ?? rows[0]
  }

  private async requireCategory(db: Reader | Db, id: string, path: string) {
    const { categories } = this.t
    const [row] = await db.select({ id: categories.id }).from(categories).where(eq(categories.id, id))
    if (!row) throw new Invalid(`no category ${id}`, [{ path, message: 'unknown category' }], 'CATEGORY_NOT_FOUND')
  }

  // ---------------------------------------------------------------------------------------------
  // products
  // ---------------------------------------------------------------------------------------------

  async createProduct(input: NewProduct): Promise<ProductView> {
    checkCurrency(input.currency)
    checkAttributes(input.attributes)
    const { products } = this.t
    const now = new Date()
    return this.db.transaction(async (tx) => {
      if (input.categoryId) await this.requireCategory(tx, input.categoryId, '/categoryId')
      await this.lockSkus(tx, [input.sku])
      const [row] = await tx
        .insert(products)
        .values({
          id: Bun.randomUUIDv7(),
          sku: input.sku,
          name: input.name.trim(),
          description: (input.description ?? '').trim(),
          price: input.price,
          currency: input.currency,
          categoryId: input.categoryId ?? null,
          attributes: input.attributes ?? {},
          active: input.active ?? true,
          // Stock may have been announced before the product existed.
          available: totalAvailable(this.t, input.sku),
          createdAt: now,
          updatedAt: now,
        })
        .onConflictDoNothing()
        .returning()
      if (!row) throw new Conflict(`a product with SKU ${input.sku} exists`, 'SKU_TAKEN')
      const product = toProduct(row)
      await this.events.publish('catalog.product.changed', { product })
      return toProductView(row)
    })
  }

  /** Changes what is given (null clears the category); by id or by SKU. */
  async updateProduct(idOrSku: string, change: ProductChange): Promise<ProductView> {
    if (change.currency !== undefined) checkCurrency(change.currency)
    checkAttributes(change.attributes)
    const { products } = this.t
    return this.db.transaction(async (tx) => {
      const current = await this.findProduct(tx, idOrSku)
      if (!current) throw new NotFound(`no product ${idOrSku}`, 'PRODUCT_NOT_FOUND')
      if (change.categoryId) await this.requireCategory(tx, change.categoryId, '/categoryId')
      const set: Partial<ProductRow> = { updatedAt: new Date() }
      if (change.name !== undefined) set.name = change.name.trim()
      if (change.description !== undefined) set.description = change.description.trim()
      if (change.price !== undefined) set.price = change.price
      if (change.currency !== undefined) set.currency = change.currency
      if (change.categoryId !== undefined) set.categoryId = change.categoryId
      if (change.attributes !== undefined) set.attributes = change.attributes
      if (change.active !== undefined) set.active = change.active
      const [row] = await tx.update(products).set(set).where(eq(products.id, current.id)).returning()
      const product = toProduct(row!)
      await this.events.publish('catalog.product.changed', { product })
      return toProductView(row!)
    })
  }

  /** By id or by SKU; inactive products only for those who may see them. */
  async getProduct(idOrSku: string, includeInactive: boolean): Promise<ProductView> {
    const row = await this.findProduct(this.db.read, idOrSku)
    if (!row || (!row.active && !includeInactive)) throw new NotFound(`no product ${idOrSku}`, 'PRODUCT_NOT_FOUND')
    return toProductView(row)
  }

  /** The products with these SKUs, inactive ones included; unknown SKUs are left out. */
  async productsBySku(skus: string[]): Promise<Product[]> {
    const found: Product[] = []
    // One SKU at a time (a cart holds a handful): a statement built once beats an `in (…)` list built each time.
    for (const sku of new Set(skus)) for (const row of await this.productBySku(this.db.read, { sku })) found.push(toProduct(row))
    return found
  }

  private async findProduct(db: Reader | Db, idOrSku: string): Promise<ProductRow | undefined> {
    const { products } = this.t
    const rows = await db
      .select()
      .from(products)
      .where(or(eq(products.id, idOrSku), eq(products.sku, idOrSku)))
    return rows.find((r) => r.id === idOrSku) ?? rows[0]
  }
}

function checkAttributes(attributes: Record<string, unknown> | undefined) {
  for (const key of Object.keys(attributes ?? {}))
    if (key.length === 0 || key.length > 64 || key.includes('\u0000'))
      throw new Invalid('attribute names must be 1 to 64 characters', [{ path: '/attributes', message: `bad attribute name ${JSON.stringify(key.slice(0, 70))}` }])
}

function checkCurrency(currency: string) {
  if (!CURRENCIES.has(currency)) throw new Invalid(`currency ${currency} is not an ISO 4217 code`, [{ path: '/currency', message: 'unknown currency' }], 'UNKNOWN_CURRENCY')
}
