/**
 * What the catalog handles: `inventory.stock.changed`, into its own projection of availability per
 * SKU and warehouse (the catalog never reads inventory's tables). What it publishes,
 * `catalog.product.changed`, is written by service.ts in the transaction of each change.
 */
import { sql } from 'drizzle-orm'
import { type Database, type Db, inListed, type Params, type Tables } from '../../kernel/db'
import type { EventEnvelope } from '../../kernel/events/port'
import type { EventPayload } from '../../shared/contracts'
import type { CatalogSchema } from './schema'

/**
 * Keeps the level of each SKU in each warehouse, and its product's total. Runs once per batch of
 * events that arrived together (the kernel records each event as processed) inside `tx`; an event
 * older than the one already applied (ids are UUIDv7, so they order by time) changes nothing, since
 * retries may arrive out of order. Per batch, three statements whatever its size: the locks of its
 * SKUs, taken in SKU order (so two batches never wait on each other in a cycle), one upsert of every
 * SKU and warehouse it changed (the newest event of the batch for each), and one update of those
 * SKUs' totals. A sensor batch changes hundreds of levels: one statement each kept ~1,100 round
 * trips per batch on PostgreSQL (BENCHMARKS.md, MQTT ingestion, 2026-11-24, slower-VM session). The
 * statements are built once: checkouts change a level or two at a time, and often.
 */
export function stockProjection(db: Database, t: Tables<CatalogSchema>, lockSkus: SkuLocks = skuLocks(db)) {
  const { stock, products } = t
  type Change = { sku: string; warehouse: string; available: number; eventId: string }
  const newer = {
    onConflictDoUpdate: {
      target: ['sku', 'warehouse'],
      set: { available: sql`excluded.available`, eventId: sql`excluded.event_id` },
      where: sql`${stock.eventId} < excluded.event_id`,
    },
  }
  // The SKUs bound as one JSON array, so that the statement is the same for any number of them.
  const totals = db.prepare('catalog.productTotals', (q, p: Params<{ skus: string }>) =>
    q
      .update(products)
      .set({ available: sql`(select coalesce(sum(${stock.available}), 0) from ${stock} where ${stock.sku} = ${products.sku})` })
      .where(inListed(db.dialect, products.sku, sql`${p('skus')}`)),
  )
  return async (events: EventEnvelope<EventPayload<'inventory.stock.changed'>>[], tx: Db) => {
    const newest = new Map<string, Change>()
    for (const { id, payload } of events) {
      const key = `${payload.sku}\u0000${payload.warehouse}`
      const known = newest.get(key)
      if (!known || known.eventId < id) newest.set(key, { sku: payload.sku, warehouse: payload.warehouse, available: payload.available, eventId: id })
    }
    // In key order, as the locks: concurrent batches (replicas) meet their rows in the same order.
    const changes = [...newest.values()].sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.warehouse < b.warehouse ? -1 : a.warehouse > b.warehouse ? 1 : 0))
    const skus = [...new Set(changes.map((c) => c.sku))]
    await lockSkus(tx, skus)
    await db.insertMany(stock, changes, newer)
    await totals(tx, { skus: JSON.stringify(skus) })
  }
}

/** Units of `sku` available across warehouses, as a subquery. */
export const totalAvailable = (t: Tables<CatalogSchema>, sku: string) =>
  sql<number>`(select coalesce(sum(${t.stock.available}), 0) from ${t.stock} where ${t.stock.sku} = ${sku})`

/**
 * Serialises, per SKU, the stock handler and the creation of a product with that SKU, so neither
 * misses the other's uncommitted write (which would leave the product's total stale). PostgreSQL
 * needs a lock for that; SQLite has one writer at a time already. One statement takes the locks
 * of all the SKUs given, in SKU order, so transactions that share SKUs never wait on each other in a
 * cycle. Built once, the SKUs bound as one JSON array: a statement written out per batch with its
 * few hundred SKUs cost 3 % of the server's CPU during sensor ingestion.
 */
export type SkuLocks = (tx: Db, skus: string[]) => Promise<void>

export function skuLocks(db: Database): SkuLocks {
  if (db.dialect !== 'postgres') return async () => {}
  const lock = db.prepare('catalog.lockSkus', (q, p: Params<{ keys: string }>) =>
    q
      .select({ locked: sql`pg_advisory_xact_lock(hashtext(k))` })
      .from(sql`(select k from jsonb_array_elements_text(${p('keys')}::text::jsonb) as v(k) order by k collate "C") as sorted`),
  )
  return async (tx, skus) => {
    if (skus.length) await lock(tx, { keys: JSON.stringify(skus.map((sku) => `catalog.sku:${sku}`)) })
  }
}
