/**
 * What the catalog handles: `inventory.stock.changed`, into its own projection of availability per
 * SKU and warehouse (the catalog never reads inventory's tables). What it publishes,
 * `catalog.product.changed`, is written by service.ts in the transaction of each change.
 */
import { sql } from 'drizzle-orm'
import type { Db, Tables } from '../../kernel/db'
import type { EventEnvelope } from '../../kernel/events/port'
import type { EventPayload } from '../../shared/contracts'
import type { CatalogSchema } from './schema'

/**
 * Keeps the level of one SKU in one warehouse. Runs once per event (the kernel's processed-event
 * record) inside `tx`; an event older than the one already applied (ids are UUIDv7, so they order
 * by time) changes nothing, since redeliveries and retries may arrive out of order.
 */
export async function applyStockChange(t: Tables<CatalogSchema>, event: EventEnvelope<EventPayload<'inventory.stock.changed'>>, tx: Db) {
  const { stock } = t
  const { sku, warehouse, available } = event.payload
  await tx
    .insert(stock)
    .values({ sku, warehouse, available, eventId: event.id })
    .onConflictDoUpdate({
      target: [stock.sku, stock.warehouse],
      set: { available, eventId: event.id },
      setWhere: sql`${stock.eventId} < ${event.id}`,
    })
}
