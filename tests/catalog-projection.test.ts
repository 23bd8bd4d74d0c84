/**
 * The catalog's projection of inventory's stock (`stockProjection`), against the real database of
 * the active dialect: a batch's levels go in one upsert and its products' totals in one update, so
 * what the handler promises is checked here directly, with event batches the bus could hand it:
 * the newest event of a level wins inside a batch and across batches, whatever order they come in;
 * an older event delivered again changes nothing; totals are sums over warehouses.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { type Database, materialize, openDatabase } from '../kernel/db'
import type { EventEnvelope } from '../kernel/events/port'
import { stockProjection } from '../plugins/catalog/events'
import { schema as catalogSchema } from '../plugins/catalog/schema'
import type { EventPayload } from '../shared/contracts'
import { ROOT, isolatedStore, variant } from './harness'

type StockChanged = EventEnvelope<EventPayload<'inventory.stock.changed'>>

const store = isolatedStore()
let db: Database
const dialect = store.env.DATABASE_URL.startsWith('sqlite') ? 'sqlite' : 'postgres'
const tables = materialize(catalogSchema, dialect)
let project: (events: StockChanged[]) => Promise<void>

/** An event as the bus delivers it; ids are UUIDv7, so one made later is newer. */
const changed = (sku: string, warehouse: string, available: number): StockChanged => ({
  id: Bun.randomUUIDv7(),
  type: 'inventory.stock.changed',
  source: 'inventory',
  payload: { sku, warehouse, onHand: available, reserved: 0, available },
  headers: {},
  occurredAt: new Date().toISOString(),
})

const product = async (sku: string) => {
  const now = new Date()
  await db.transaction((tx) =>
    tx.insert(tables.products).values({
      id: Bun.randomUUIDv7(),
      sku,
      name: `Product ${sku}`,
      description: 'projected',
      price: 1000,
      currency: 'EUR',
      categoryId: null,
      attributes: {},
      active: true,
      available: 0,
      createdAt: now,
      updatedAt: now,
    }),
  )
}
const level = async (sku: string, warehouse: string) =>
  (await db.read.select().from(tables.stock).where(eq(tables.stock.sku, sku))).find((s) => s.warehouse === warehouse)?.available
const total = async (sku: string) => (await db.read.select().from(tables.products).where(eq(tables.products.sku, sku)))[0]?.available
const tag = Bun.randomUUIDv7().slice(-8)

beforeAll(async () => {
  db = openDatabase(store.env.DATABASE_URL)
  await db.migrate(join(ROOT, 'plugins/catalog/migrations', db.dialect), '__migrations_catalog')
  const handler = stockProjection(db, tables)
  project = (events) => db.transaction((tx) => handler(events, tx))
})
afterAll(async () => {
  await db.close()
  await store.cleanup()
})

describe(`catalog stock projection (${variant})`, () => {
  test('inside one batch the newest event of a level wins, whatever its place; the total sums the warehouses', async () => {
    const sku = `P-${tag}-1`
    await product(sku)
    const older = changed(sku, 'W1', 5)
    const newer = changed(sku, 'W1', 3)
    await project([newer, changed(sku, 'W2', 4), older])
    expect(await level(sku, 'W1')).toBe(3)
    expect(await level(sku, 'W2')).toBe(4)
    expect(await total(sku)).toBe(7)
  })

  test('an older event delivered after a newer one (a retry, a replayed dead letter) changes nothing', async () => {
    const sku = `P-${tag}-2`
    await product(sku)
    const older = changed(sku, 'W1', 10)
    const newer = changed(sku, 'W1', 2)
    await project([newer])
    await project([older])
    expect(await level(sku, 'W1')).toBe(2)
    expect(await total(sku)).toBe(2)
    await project([newer]) // the same event again
    expect(await level(sku, 'W1')).toBe(2)
    expect(await total(sku)).toBe(2)
  })

  test('a sensor-sized batch (hundreds of levels over many SKUs) is stored whole, with every total', async () => {
    const skus = Array.from({ length: 120 }, (_, i) => `P-${tag}-bulk-${i}`)
    for (const sku of skus.slice(0, 100)) await product(sku) // 20 SKUs the catalog does not sell
    const events = skus.flatMap((sku, i) => ['W1', 'W2', 'W3'].map((w, j) => changed(sku, w, i + j)))
    await project(events)
    for (const [i, sku] of skus.entries()) {
      expect(await level(sku, 'W3')).toBe(i + 2)
      if (i < 100) expect(await total(sku)).toBe(3 * i + 3)
    }
    expect(await total(`P-${tag}-bulk-110`)).toBeUndefined()
  })

  test('a level that falls to zero takes its product out of stock', async () => {
    const sku = `P-${tag}-3`
    await product(sku)
    await project([changed(sku, 'W1', 4), changed(sku, 'W2', 1)])
    expect(await total(sku)).toBe(5)
    await project([changed(sku, 'W1', 0), changed(sku, 'W2', 0)])
    expect(await total(sku)).toBe(0)
  })
})
