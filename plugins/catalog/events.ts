/**
 * What the catalog handles: `inventory.stock.changed`, into its own projection of availability per
 * SKU and warehouse (the catalog never reads inventory's tables). What it publishes,
 * `catalog.product.changed`, is written by service.ts in the transaction of each change.
 */
import { eq, sql } from 'drizzle-orm'
import type { Database, Db, Params, Tables } from '../../kernel/db'
import type { EventEnvelope } from '../../kernel/events/port'
import type { EventPayload } from '../../shared/contracts'
import type { CatalogSchema } from './schema'

/**
 * Keeps the level of each SKU in each warehouse, and its product's total. Runs once per batch of
 * events that arrived together (the kernel records each event as processed) inside `tx`; an event
 * older than the one already applied (ids are UUIDv7, so they order by time) changes nothing, since
 * retries may arrive out of order. Per batch: one lock statement over its SKUs, taken in SKU order
 * (so two batches never wait on each other in a cycle), one upsert per SKU and warehouse (the
 * newest event of the batch only), one total per SKU. Its statements are built once: every checkout
 * and every sensor batch changes stock.
 */
export function stockProjection(db: Database, t: Tables<CatalogSchema>) {
  const { stock, products } = t
  type Change = { sku: string; warehouse: string; available: number; eventId: string }
  const upsert = db.prepare('catalog.stockLevel', (q, p: Params<Change>) =>
    q
      .insert(stock)
      .values({ sku: p('sku'), warehouse: p('warehouse'), available: p('available'), eventId: p('eventId') } as never)
      .onConflictDoUpdate({
        target: [stock.sku, stock.warehouse],
        set: { available: sql`excluded.available`, eventId: sql`excluded.event_id` },
        setWhere: sql`${stock.eventId} < excluded.event_id`,
      }),
  )
  const total = db.prepare('catalog.productAvailable', (q, p: Params<{ sku: string }>) =>
    q
      .update(products)
      .set({ available: sql`(select coalesce(sum(${stock.available}), 0) from ${stock} where ${stock.sku} = ${p('sku')})` })
      .where(eq(products.sku, p('sku'))),
  )
  return async (events: EventEnvelope<EventPayload<'inventory.stock.changed'>>[], tx: Db) => {
    const newest = new Map<string, Change>()
    for (const { id, payload } of events) {
      const key = `${payload.sku}\u0000${payload.warehouse}`
      const known = newest.get(key)
      if (!known || known.eventId < id) newest.set(key, { sku: payload.sku, warehouse: payload.warehouse, available: payload.available, eventId: id })
    }
    const changes = [...newest.values()]
    const skus = [...new Set(changes.map((c) => c.sku))]
    await lockSkus(db, tx, skus)
    for (const change of changes) await upsert(tx, change)
    for (const sku of skus) await total(tx, { sku })
  }
}

/** Units of `sku` available across warehouses, as a subquery. */
export const totalAvailable = (t: Tables<CatalogSchema>, sku: string) =>
  sql<number>`(select coalesce(sum(${t.stock.available}), 0) from ${t.stock} where ${t.stock.sku} = ${sku})`

/**
 * Serialises, per SKU, the stock handler and the creation of a product with that SKU, so neither
 * misses the other's uncommitted write (which would leave the product's total stale). PostgreSQL
 * needs a lock for that; SQLite has one writer at a time already. One statement takes the locks
 * of all `skus` in SKU order, so transactions that share SKUs never wait on each other in a cycle.
 */
export async function lockSkus(db: Database, tx: Db, skus: string[]) {
  if (db.dialect !== 'postgres' || skus.length === 0) return
  const keys = sql.join(
    skus.map((sku) => sql`(${`catalog.sku:${sku}`})`),
    sql`, `,
  )
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(k)) from (select k from (values ${keys}) as v(k) order by k collate "C") as sorted`)
}
