/** The inventory plugin's tables. Quantities are integers; `warehouse` columns hold the warehouse code. */
import { sql } from 'drizzle-orm'
import { type Columns, table } from '../../kernel/db/schema'

const movementColumns = (c: Columns) => ({
  id: c.id(),
  sku: c.text('sku').notNull(),
  warehouse: c.text('warehouse').notNull(),
  delta: c.integer('delta').notNull(),
  onHandAfter: c.integer('on_hand_after').notNull(),
  reason: c.text('reason').notNull(),
  source: c.text('source').notNull(),
  at: c.timestamp('at').notNull(),
})

const readingColumns = (c: Columns) => ({
  id: c.id(),
  deviceId: c.text('device_id').notNull(),
  seq: c.bigint('seq'),
  ts: c.bigint('ts'),
  sku: c.text('sku'),
  type: c.text('type'),
  value: c.integer('value'),
  /** applied | stale | rejected */
  status: c.text('status').notNull(),
  reason: c.text('reason'),
  /** The payload as received, for rejected readings. */
  raw: c.text('raw'),
  receivedAt: c.timestamp('received_at').notNull(),
})

export const schema = {
  warehouses: table(
    'inventory_warehouses',
    (c) => ({ id: c.id(), code: c.text('code').notNull(), name: c.text('name').notNull(), createdAt: c.timestamp('created_at').notNull() }),
    (c) => (t) => [c.uniqueIndex('inventory_warehouses_code').on(t.code)],
  ),
  items: table(
    'inventory_items',
    (c) => ({
      id: c.id(),
      sku: c.text('sku').notNull(),
      name: c.text('name').notNull(),
      reorderPoint: c.integer('reorder_point'),
      reorderQuantity: c.integer('reorder_quantity'),
      supplierId: c.text('supplier_id'),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.uniqueIndex('inventory_items_sku').on(t.sku)],
  ),
  /** One row per (sku, warehouse); available = onHand - reserved. */
  levels: table(
    'inventory_levels',
    (c) => ({
      sku: c.text('sku').notNull(),
      warehouse: c.text('warehouse').notNull(),
      onHand: c.integer('on_hand').notNull().default(0),
      reserved: c.integer('reserved').notNull().default(0),
      /** `ts` of the last applied count reading; older counts are stale. */
      lastCountTs: c.bigint('last_count_ts'),
      /** A low-stock alert is open: not raised again until available rises above the reorder point. */
      lowAlerted: c.boolean('low_alerted').notNull().default(false),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.sku, t.warehouse] })],
  ),
  /**
   * The append-only ledger: every change of onHand is one row. The rows a small sensor batch writes
   * on SQLite go to `movementsRecent` first (see there); a listing reads both.
   */
  movements: table('inventory_movements', movementColumns, (c) => (t) => [c.index('inventory_movements_level').on(t.sku, t.warehouse, t.id)]),
  /**
   * Where small ingest batches on SQLite write their movements and readings: no index but the
   * primary key, which begins with `part` (a hash of the level's or device's key, 0 to
   * STAGED_PARTS - 1). Every so often a batch moves one part whole into the indexed table, in index
   * order, and deletes it. Written straight to the indexed tables, each small batch changed one
   * index page per level and per device it touched (one for every 0.7 readings: 254 pages written to
   * SQLite's log in a 141-message commit, 85 % of them index leaves); moved a part at a time, each
   * page takes a second's rows at once (BENCHMARKS.md, MQTT ingestion, ninth session). They are
   * WITHOUT ROWID (written by hand into the migration: drizzle-kit cannot say it), so a part's rows
   * are stored together, appended at its end and deleted as one range. PostgreSQL logs changed rows,
   * not pages, and does not stage (staging.ts); the tables stay empty there.
   */
  movementsRecent: table(
    'inventory_movements_recent',
    (c) => ({ part: c.integer('part').notNull(), ...movementColumns(c), id: c.text('id').notNull() }),
    (c) => (t) => [c.primaryKey({ columns: [t.part, t.id] })],
  ),
  reservations: table(
    'inventory_reservations',
    (c) => ({
      id: c.id(),
      sku: c.text('sku').notNull(),
      warehouse: c.text('warehouse').notNull(),
      quantity: c.integer('quantity').notNull(),
      reference: c.text('reference').notNull(),
      /** active → committed | released | expired */
      status: c.text('status').notNull(),
      expiresAt: c.timestamp('expires_at').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.index('inventory_reservations_expiry').on(t.status, t.expiresAt), c.index('inventory_reservations_reference').on(t.reference)],
  ),
  /**
   * References whose effect happened once: an allocation (reserveLines) or a restock. The key makes a
   * retried or concurrent call with the same reference wait for, then return, the first one's result.
   */
  references: table(
    'inventory_references',
    (c) => ({ kind: c.text('kind').notNull(), reference: c.text('reference').notNull(), createdAt: c.timestamp('created_at').notNull() }),
    (c) => (t) => [c.primaryKey({ columns: [t.kind, t.reference] })],
  ),
  suppliers: table('inventory_suppliers', (c) => ({
    id: c.id(),
    name: c.text('name').notNull(),
    email: c.text('email'),
    createdAt: c.timestamp('created_at').notNull(),
  })),
  purchaseOrders: table('inventory_purchase_orders', (c) => ({
    id: c.id(),
    supplierId: c.text('supplier_id').notNull(),
    warehouse: c.text('warehouse').notNull(),
    /** draft → ordered → received (or cancelled) */
    status: c.text('status').notNull(),
    lines: c.json<{ sku: string; quantity: number }[]>('lines').notNull(),
    createdAt: c.timestamp('created_at').notNull(),
    updatedAt: c.timestamp('updated_at').notNull(),
  })),
  devices: table('inventory_devices', (c) => ({
    id: c.id(),
    warehouse: c.text('warehouse').notNull(),
    name: c.text('name').notNull(),
    secretHash: c.text('secret_hash').notNull(),
    status: c.text('status').notNull(),
    lastSeenAt: c.timestamp('last_seen_at'),
    heartbeatSeconds: c.integer('heartbeat_seconds').notNull(),
    createdAt: c.timestamp('created_at').notNull(),
  })),
  /**
   * Every reading received, applied or not; (deviceId, seq) is unique, and lists a device's
   * history. A message refused before a seq could be read from it is kept with none, and listed by
   * the small index of those alone: a second index over every reading by (deviceId, id), one more
   * page changed per device and batch, took SQLite's writes per batch from 5.5 to 11.5 ms
   * (BENCHMARKS.md, MQTT ingestion). On SQLite, small batches write readings with a seq to
   * `readingsRecent` first, like movements, and `deviceSeqs` settles whether one was stored before.
   */
  readings: table('inventory_readings', readingColumns, (c) => (t) => [
    c.uniqueIndex('inventory_readings_device_seq').on(t.deviceId, t.seq),
    c.index('inventory_readings_refused').on(t.deviceId, t.id).where(sql`seq IS NULL`),
  ]),
  readingsRecent: table(
    'inventory_readings_recent',
    (c) => ({ part: c.integer('part').notNull(), ...readingColumns(c), id: c.text('id').notNull() }),
    (c) => (t) => [c.primaryKey({ columns: [t.part, t.id] })],
  ),
  /**
   * SQLite's de-duplication (PostgreSQL's is the unique index): the highest seq stored of each
   * device (null: none yet). A reading above it is new; one at or below it is looked up among the
   * device's stored readings, staged or not (a re-send, or one that arrived after a later one).
   * SQLite has one writer, so no two batches decide at once. Its own narrow table: a batch changes
   * hundreds of these rows, and they fit in a few pages. (On PostgreSQL the locks this would need
   * and the row versions it would leave took lag p99 at 5,000 readings/s from 330–497 ms to
   * 525–993: BENCHMARKS.md, MQTT ingestion, ninth session.)
   */
  deviceSeqs: table('inventory_device_seqs', (c) => ({ deviceId: c.id('device_id'), seqHigh: c.bigint('seq_high') })),
  alerts: table(
    'inventory_alerts',
    (c) => ({
      id: c.id(),
      /** low_stock | device_offline */
      type: c.text('type').notNull(),
      sku: c.text('sku'),
      warehouse: c.text('warehouse'),
      deviceId: c.text('device_id'),
      message: c.text('message').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.index('inventory_alerts_created').on(t.id)],
  ),
}

export type InventorySchema = typeof schema
