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
 * Keeps the level of one SKU in one warehouse, and its product's total. Runs once per event (the
 * kernel's processed-event record) inside `tx`; an event older than the one already applied (ids
 * are UUIDv7, so they order by time) changes nothing, since retries may arrive out of order.
 * Its two statements are built once: every checkout changes stock twice.
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
  return async (event: EventEnvelope<EventPayload<'inventory.stock.changed'>>, tx: Db) => {
    const { sku, warehouse, available } = event.payload
    await lockSku(db, tx, sku)
    await upsert(tx, { sku, warehouse, available, eventId: event.id })
    await total(tx, { sku })
  }
}

/** Units of `sku` available across warehouses, as a subquery. */
export const totalAvailable = (t: Tables<CatalogSchema>, sku: string) =>
  sql<number>`(select coalesce(sum(${t.stock.available}), 0) from ${t.stock} where ${t.stock.sku} = ${sku})`

/**
 * Serialises, per SKU, the stock handler and the creation of a product with that SKU, so neither
 * misses the other's uncommitted write (which would leave the product's total stale). PostgreSQL
 * needs a lock for that; SQLite has one writer at a time already.
 */
export async function lockSku(db: Database, tx: Db, sku: string) {
  if (db.dialect === 'postgres') await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`catalog.sku:${sku}`}))`)
}
