/**
 * catalog: a category tree and products with integer prices, full-text search with filters and
 * keyset pages, and a projection of inventory's stock for `inStock` (CONTRACT.md section 7).
 */
import { definePlugin } from '../../kernel/plugin'
import { skuLocks, stockProjection } from './events'
import { catalogRoutes } from './routes'
import { schema } from './schema'
import { ProductSearch } from './search'
import { CatalogService } from './service'

export default definePlugin({
  name: 'catalog',
  version: '1.0.0',
  dependsOn: ['auth'],
  description: 'categories, products, search and availability',
  schema,
  setup(ctx) {
    // One statement for both: product creation and the stock projection lock the same SKU keys.
    const lockSkus = skuLocks(ctx.db)
    const catalog = new CatalogService(ctx.db, ctx.tables, ctx.events, lockSkus)
    const search = new ProductSearch(ctx.db, ctx.tables)
    ctx.mount(catalogRoutes(ctx, catalog, search))
    ctx.provide('catalog.getProducts', async ({ skus }) => ({ items: await catalog.productsBySku(skus) }))
    // Idempotent: the newest event id per level wins, so a repeat changes nothing and needs no processed-event record.
    ctx.events.onBatch('inventory.stock.changed', stockProjection(ctx.db, ctx.tables, lockSkus), { idempotent: true })
  },
})
