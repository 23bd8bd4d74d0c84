/**
 * Stock: warehouses, items, levels, manual adjustments, the movement ledger, reservations with a
 * TTL, suppliers and purchase orders, and the alerts list. No HTTP here: routes.ts translates
 * requests into these calls, and plugin.ts offers some of them as actions to other plugins.
 *
 * Every change of onHand goes through the Ledger; every stock change (onHand or reserved) is
 * announced through `ledger.announce` in the transaction that made it. Races are settled in the
 * database: reserving is one conditional update (`reserved + q <= onHand`), and every status
 * change of a reservation or purchase order is an update conditional on the status it leaves.
 */
import { and, desc, eq, gt, lt, lte, or, sql, type SQL } from 'drizzle-orm'
import type { Database, Db, Tables } from '../../kernel/db'
import { Conflict, Invalid, NotFound } from '../../shared/errors'
import { type Ledger, type Level, levelKey, toLevel } from './ledger'
import type { InventorySchema } from './schema'
import { newestFirst, partOf } from './staging'

type T = Tables<InventorySchema>
type WarehouseRow = T['warehouses']['$inferSelect']
type ItemRow = T['items']['$inferSelect']
type ReservationRow = T['reservations']['$inferSelect']
type SupplierRow = T['suppliers']['$inferSelect']
type PurchaseOrderRow = T['purchaseOrders']['$inferSelect']
type MovementRow = T['movements']['$inferSelect']

/** Columns are 32-bit integers on PostgreSQL; stock never goes beyond this on either dialect. */
export const MAX_ON_HAND = 2_147_483_647
/** Due reservations expired per sweep (the rest wait for the next one). */
const SWEEP_BATCH = 500

export type ReservationStatus = 'active' | 'committed' | 'released' | 'expired'
export type PurchaseOrderStatus = 'draft' | 'ordered' | 'received' | 'cancelled'

export interface WarehouseView {
  id: string
  code: string
  name: string
  createdAt: string
}
export interface ItemView {
  id: string
  sku: string
  name: string
  reorderPoint?: number
  reorderQuantity?: number
  supplierId?: string
  createdAt: string
}
export interface ReservationView {
  id: string
  sku: string
  warehouse: string
  quantity: number
  reference: string
  status: ReservationStatus
  expiresAt: string
  createdAt: string
}
export interface SupplierView {
  id: string
  name: string
  email: string | null
  createdAt: string
}
export interface PurchaseOrderView {
  id: string
  supplierId: string
  warehouse: string
  status: PurchaseOrderStatus
  lines: { sku: string; quantity: number }[]
  createdAt: string
  updatedAt: string
}
export interface MovementView {
  id: string
  sku: string
  warehouse: string
  delta: number
  onHandAfter: number
  reason: string
  source: string
  at: string
}

export const toWarehouseView = (w: WarehouseRow): WarehouseView => ({ id: w.id, code: w.code, name: w.name, createdAt: w.createdAt.toISOString() })
export const toItemView = (i: ItemRow): ItemView => ({
  id: i.id,
  sku: i.sku,
  name: i.name,
  ...(i.reorderPoint !== null ? { reorderPoint: i.reorderPoint } : {}),
  ...(i.reorderQuantity !== null ? { reorderQuantity: i.reorderQuantity } : {}),
  ...(i.supplierId !== null ? { supplierId: i.supplierId } : {}),
  createdAt: i.createdAt.toISOString(),
})
export const toReservationView = (r: ReservationRow): ReservationView => ({
  id: r.id,
  sku: r.sku,
  warehouse: r.warehouse,
  quantity: r.quantity,
  reference: r.reference,
  status: r.status as ReservationStatus,
  expiresAt: r.expiresAt.toISOString(),
  createdAt: r.createdAt.toISOString(),
})
export const toSupplierView = (s: SupplierRow): SupplierView => ({ id: s.id, name: s.name, email: s.email, createdAt: s.createdAt.toISOString() })
export const toPurchaseOrderView = (p: PurchaseOrderRow): PurchaseOrderView => ({
  id: p.id,
  supplierId: p.supplierId,
  warehouse: p.warehouse,
  status: p.status as PurchaseOrderStatus,
  lines: p.lines,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
})
export const toMovementView = (m: MovementRow): MovementView => ({
  id: m.id,
  sku: m.sku,
  warehouse: m.warehouse,
  delta: m.delta,
  onHandAfter: m.onHandAfter,
  reason: m.reason,
  source: m.source,
  at: m.at.toISOString(),
})

export interface StockDeps {
  db: Database
  t: T
  ledger: Ledger
  /** Lifetime of a reservation created without `ttlSeconds`. */
  defaultTtlSeconds: number
}

/** What a transaction decided about a reservation; errors are thrown after it committed. */
type Outcome = { ok: ReservationRow } | { missing: true } | { refused: ReservationRow }

export class StockService {
  constructor(private readonly d: StockDeps) {}

  // ---------------------------------------------------------------------------------------------
  // warehouses and items
  // ---------------------------------------------------------------------------------------------

  async createWarehouse(input: { code: string; name: string }): Promise<WarehouseView> {
    const { warehouses } = this.d.t
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(warehouses)
        .values({ id: Bun.randomUUIDv7(), code: input.code, name: input.name.trim(), createdAt: new Date() })
        .onConflictDoNothing()
        .returning(),
    )
    if (!row) throw new Conflict(`a warehouse with code ${input.code} exists`, 'WAREHOUSE_CODE_TAKEN')
    return toWarehouseView(row)
  }

  listWarehouses(limit: number, after?: string) {
    const { warehouses } = this.d.t
    return this.d.db.read
      .select()
      .from(warehouses)
      .where(after ? gt(warehouses.id, after) : undefined)
      .orderBy(warehouses.id)
      .limit(limit)
  }

  /** By id or by code. */
  async getWarehouse(idOrCode: string): Promise<WarehouseView> {
    const { warehouses } = this.d.t
    const rows = await this.d.db.read
      .select()
      .from(warehouses)
      .where(or(eq(warehouses.id, idOrCode), eq(warehouses.code, idOrCode)))
    const row = rows.find((r) => r.id === idOrCode) ?? rows[0]
    if (!row) throw new NotFound(`no warehouse ${idOrCode}`, 'WAREHOUSE_NOT_FOUND')
    return toWarehouseView(row)
  }

  async createItem(input: { sku: string; name: string; reorderPoint?: number; reorderQuantity?: number; supplierId?: string }): Promise<ItemView> {
    const { items } = this.d.t
    if (input.supplierId !== undefined) await this.requireSupplier(input.supplierId)
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(items)
        .values({
          id: Bun.randomUUIDv7(),
          sku: input.sku,
          name: input.name.trim(),
          reorderPoint: input.reorderPoint ?? null,
          reorderQuantity: input.reorderQuantity ?? null,
          supplierId: input.supplierId ?? null,
          createdAt: new Date(),
        })
        .onConflictDoNothing()
        .returning(),
    )
    if (!row) throw new Conflict(`an item with SKU ${input.sku} exists`, 'SKU_TAKEN')
    return toItemView(row)
  }

  listItems(limit: number, after?: string) {
    const { items } = this.d.t
    return this.d.db.read
      .select()
      .from(items)
      .where(after ? gt(items.id, after) : undefined)
      .orderBy(items.id)
      .limit(limit)
  }

  /** By id or by SKU. */
  async getItem(idOrSku: string): Promise<ItemView> {
    return toItemView(await this.findItem(this.d.db.read, idOrSku))
  }

  /**
   * Changes the name or the reorder settings (null clears one). The low-stock state is evaluated
   * again at the item's next stock change.
   */
  async updateItem(
    idOrSku: string,
    change: { name?: string; reorderPoint?: number | null; reorderQuantity?: number | null; supplierId?: string | null },
  ): Promise<ItemView> {
    if (typeof change.supplierId === 'string') await this.requireSupplier(change.supplierId)
    const { items } = this.d.t
    const set: Partial<ItemRow> = {}
    if (change.name !== undefined) set.name = change.name.trim()
    if (change.reorderPoint !== undefined) set.reorderPoint = change.reorderPoint
    if (change.reorderQuantity !== undefined) set.reorderQuantity = change.reorderQuantity
    if (change.supplierId !== undefined) set.supplierId = change.supplierId
    return this.d.db.transaction(async (tx) => {
      const item = await this.findItem(tx, idOrSku)
      if (Object.keys(set).length === 0) return toItemView(item)
      const [row] = await tx.update(items).set(set).where(eq(items.id, item.id)).returning()
      return toItemView(row)
    })
  }

  // ---------------------------------------------------------------------------------------------
  // stock levels, adjustments, movements
  // ---------------------------------------------------------------------------------------------

  /**
   * Stock levels, by SKU then warehouse. Reservations past their expiry are released first, so
   * what is shown never counts them. A pair that exists but never held stock shows as zeros.
   */
  async stock(filter: { sku?: string; warehouse?: string }, page?: { limit: number; after?: [string, string] }): Promise<Level[]> {
    await this.expireDue(filter)
    const { levels } = this.d.t
    const after = page?.after
    const query = this.d.db.read
      .select()
      .from(levels)
      .where(
        and(
          filter.sku ? eq(levels.sku, filter.sku) : undefined,
          filter.warehouse ? eq(levels.warehouse, filter.warehouse) : undefined,
          after ? or(gt(levels.sku, after[0]), and(eq(levels.sku, after[0]), gt(levels.warehouse, after[1]))) : undefined,
        ),
      )
      .orderBy(levels.sku, levels.warehouse)
    const rows = page ? await query.limit(page.limit) : await query
    if (rows.length === 0 && filter.sku && filter.warehouse && !after && (await this.pairExists(filter.sku, filter.warehouse)))
      return [{ sku: filter.sku, warehouse: filter.warehouse, onHand: 0, reserved: 0, available: 0 }]
    return rows.map(toLevel)
  }

  /**
   * A manual movement: onHand += delta. A decrease may not take available below zero (stock that
   * is reserved cannot be written off by hand), so it is refused with 409 and changes nothing.
   */
  async adjust(input: { sku: string; warehouse: string; delta: number; reason: string }, userId: string): Promise<Level> {
    if (input.delta === 0) throw new Invalid('delta must not be zero', [{ path: '/delta', message: 'Expected a non-zero integer' }])
    await this.requirePair(input.sku, input.warehouse)
    const { ledger } = this.d
    return this.d.db.transaction(async (tx) => {
      await this.ensureRoom(tx, input.sku, input.warehouse, input.delta)
      const level = await ledger.adjust(tx, {
        sku: input.sku,
        warehouse: input.warehouse,
        delta: input.delta,
        reason: input.reason.trim(),
        source: `manual:${userId}`,
        keepAvailable: true,
      })
      if (!level) {
        const now = await ledger.level(tx, input.sku, input.warehouse)
        throw new Conflict(
          `cannot remove ${-input.delta} of ${input.sku} in ${input.warehouse}: only ${Math.max(0, now?.available ?? 0)} available`,
          'INSUFFICIENT_STOCK',
        )
      }
      await ledger.announce(tx, [level])
      return level
    })
  }

  /** The ledger, newest first (movements staged by ingestion included). */
  listMovements(filter: { sku?: string; warehouse?: string }, limit: number, before?: string) {
    const { movements, movementsRecent } = this.d.t
    const part = filter.sku && filter.warehouse ? partOf(levelKey(filter.sku, filter.warehouse)) : undefined
    return newestFirst(
      this.d.db.read,
      movements,
      movementsRecent,
      (m, staged) =>
        and(
          staged && part !== undefined ? eq(movementsRecent.part, part) : undefined,
          filter.sku ? eq(m.sku, filter.sku) : undefined,
          filter.warehouse ? eq(m.warehouse, filter.warehouse) : undefined,
          before ? lt(m.id, before) : undefined,
        ),
      'id',
      limit,
    )
  }

  // ---------------------------------------------------------------------------------------------
  // reservations
  // ---------------------------------------------------------------------------------------------

  /**
   * Holds `quantity` for `reference` until committed, released or expired. One conditional update
   * decides it, so concurrent reservations never take available below zero: 409 OUT_OF_STOCK.
   */
  async reserve(input: { sku: string; warehouse: string; quantity: number; reference: string; ttlSeconds?: number }): Promise<ReservationView> {
    await this.requirePair(input.sku, input.warehouse)
    // Stock held by reservations past their expiry is free again before anyone asks for it.
    await this.expireDue({ sku: input.sku, warehouse: input.warehouse })
    const { levels, reservations } = this.d.t
    const ttl = input.ttlSeconds ?? this.d.defaultTtlSeconds
    const q = input.quantity
    return this.d.db.transaction(async (tx) => {
      const now = new Date()
      const [level] = await tx
        .update(levels)
        .set({ reserved: sql`${levels.reserved} + ${q}`, updatedAt: now })
        .where(and(this.levelWhere(input.sku, input.warehouse), sql`${levels.onHand} - ${levels.reserved} >= ${q}`))
        .returning()
      if (!level) {
        const current = await this.d.ledger.level(tx, input.sku, input.warehouse)
        throw new Conflict(
          `only ${Math.max(0, current?.available ?? 0)} of ${input.sku} available in ${input.warehouse}, ${q} requested`,
          'OUT_OF_STOCK',
        )
      }
      const [row] = await tx
        .insert(reservations)
        .values({
          id: Bun.randomUUIDv7(),
          sku: input.sku,
          warehouse: input.warehouse,
          quantity: q,
          reference: input.reference,
          status: 'active',
          expiresAt: new Date(now.getTime() + ttl * 1000),
          createdAt: now,
        })
        .returning()
      await this.d.ledger.announce(tx, [toLevel(level)])
      return toReservationView(row)
    })
  }

  /**
   * The reserved stock leaves: onHand and reserved drop by the quantity, with a movement in the
   * ledger. Committing a committed reservation returns it unchanged; a released or expired one
   * (including one whose expiry passed a moment ago) is 409.
   */
  async commit(id: string): Promise<ReservationView> {
    const { reservations } = this.d.t
    const outcome = await this.d.db.transaction<Outcome>(async (tx) => {
      const [row] = await tx
        .update(reservations)
        .set({ status: 'committed' })
        .where(and(eq(reservations.id, id), eq(reservations.status, 'active'), gt(reservations.expiresAt, new Date())))
        .returning()
      if (row) {
        await this.unreserve(tx, row)
        const level = await this.d.ledger.adjust(tx, {
          sku: row.sku,
          warehouse: row.warehouse,
          delta: -row.quantity,
          reason: 'reservation committed',
          source: `reservation:${row.id}`,
        })
        await this.d.ledger.announce(tx, level ? [level] : [])
        return { ok: row }
      }
      const current = await this.settle(tx, id)
      if (!current) return { missing: true }
      return current.status === 'committed' ? { ok: current } : { refused: current }
    })
    if ('missing' in outcome) throw new NotFound(`no reservation ${id}`, 'RESERVATION_NOT_FOUND')
    if ('refused' in outcome) {
      const { status } = outcome.refused
      throw new Conflict(`reservation ${id} is ${status} and can no longer be committed`, status === 'expired' ? 'RESERVATION_EXPIRED' : 'RESERVATION_RELEASED')
    }
    return toReservationView(outcome.ok)
  }

  /**
   * Gives the reserved stock back. Releasing a released or expired reservation returns it
   * unchanged; a committed one is 409 (its stock has left).
   */
  async release(id: string): Promise<ReservationView> {
    const { reservations } = this.d.t
    const outcome = await this.d.db.transaction<Outcome>(async (tx) => {
      const [row] = await tx
        .update(reservations)
        .set({ status: 'released' })
        .where(and(eq(reservations.id, id), eq(reservations.status, 'active'), gt(reservations.expiresAt, new Date())))
        .returning()
      if (row) {
        await this.d.ledger.announce(tx, [await this.unreserve(tx, row)])
        return { ok: row }
      }
      const current = await this.settle(tx, id)
      if (!current) return { missing: true }
      return current.status === 'committed' ? { refused: current } : { ok: current }
    })
    if ('missing' in outcome) throw new NotFound(`no reservation ${id}`, 'RESERVATION_NOT_FOUND')
    if ('refused' in outcome) throw new Conflict(`reservation ${id} is committed: its stock has left`, 'RESERVATION_COMMITTED')
    return toReservationView(outcome.ok)
  }

  async getReservation(id: string): Promise<ReservationView> {
    await this.expireDue({ id })
    const { reservations } = this.d.t
    const [row] = await this.d.db.read.select().from(reservations).where(eq(reservations.id, id))
    if (!row) throw new NotFound(`no reservation ${id}`, 'RESERVATION_NOT_FOUND')
    return toReservationView(row)
  }

  /** Newest first. */
  async listReservations(
    filter: { sku?: string; warehouse?: string; status?: ReservationStatus; reference?: string },
    limit: number,
    before?: string,
  ) {
    await this.expireDue({ sku: filter.sku, warehouse: filter.warehouse })
    const { reservations } = this.d.t
    return this.d.db.read
      .select()
      .from(reservations)
      .where(
        and(
          filter.sku ? eq(reservations.sku, filter.sku) : undefined,
          filter.warehouse ? eq(reservations.warehouse, filter.warehouse) : undefined,
          filter.status ? eq(reservations.status, filter.status) : undefined,
          filter.reference ? eq(reservations.reference, filter.reference) : undefined,
          before ? lt(reservations.id, before) : undefined,
        ),
      )
      .orderBy(desc(reservations.id))
      .limit(limit)
  }

  /**
   * Releases active reservations past their expiry (status `expired`), each in its own short
   * transaction, locking in the same order as commit and release (reservation, then level).
   * Run by the sweeper and before reads and reservations of the stock concerned.
   */
  async expireDue(filter: { sku?: string; warehouse?: string; id?: string } = {}): Promise<number> {
    const { reservations } = this.d.t
    const due = await this.d.db.read
      .select({ id: reservations.id })
      .from(reservations)
      .where(
        and(
          eq(reservations.status, 'active'),
          lte(reservations.expiresAt, new Date()),
          filter.id ? eq(reservations.id, filter.id) : undefined,
          filter.sku ? eq(reservations.sku, filter.sku) : undefined,
          filter.warehouse ? eq(reservations.warehouse, filter.warehouse) : undefined,
        ),
      )
      .orderBy(reservations.expiresAt)
      .limit(SWEEP_BATCH)
    let expired = 0
    for (const { id } of due) if (await this.d.db.transaction((tx) => this.expire(tx, id))) expired++
    return expired
  }

  /** Expires `id` if it is active and past its expiry; true when this call did it. */
  private async expire(tx: Db, id: string): Promise<boolean> {
    const { reservations } = this.d.t
    const [row] = await tx
      .update(reservations)
      .set({ status: 'expired' })
      .where(and(eq(reservations.id, id), eq(reservations.status, 'active'), lte(reservations.expiresAt, new Date())))
      .returning()
    if (!row) return false
    await this.d.ledger.announce(tx, [await this.unreserve(tx, row)])
    return true
  }

  /** The reservation as it stands once an expiry that is due has been applied. */
  private async settle(tx: Db, id: string): Promise<ReservationRow | undefined> {
    const { reservations } = this.d.t
    const read = async () => (await tx.select().from(reservations).where(eq(reservations.id, id)))[0]
    const row = await read()
    if (row?.status !== 'active') return row
    await this.expire(tx, id)
    return read()
  }

  /** Takes a reservation's quantity off its level's `reserved` (the caller changed its status). */
  async unreserve(tx: Db, r: ReservationRow): Promise<Level> {
    const { levels } = this.d.t
    const [level] = await tx
      .update(levels)
      .set({ reserved: sql`${levels.reserved} - ${r.quantity}`, updatedAt: new Date() })
      .where(this.levelWhere(r.sku, r.warehouse))
      .returning()
    return toLevel(level)
  }

  // ---------------------------------------------------------------------------------------------
  // suppliers and purchase orders
  // ---------------------------------------------------------------------------------------------

  async createSupplier(input: { name: string; email?: string }): Promise<SupplierView> {
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(this.d.t.suppliers)
        .values({ id: Bun.randomUUIDv7(), name: input.name.trim(), email: input.email ?? null, createdAt: new Date() })
        .returning(),
    )
    return toSupplierView(row)
  }

  listSuppliers(limit: number, after?: string) {
    const { suppliers } = this.d.t
    return this.d.db.read
      .select()
      .from(suppliers)
      .where(after ? gt(suppliers.id, after) : undefined)
      .orderBy(suppliers.id)
      .limit(limit)
  }

  async getSupplier(id: string): Promise<SupplierView> {
    return toSupplierView(await this.requireSupplier(id))
  }

  async createPurchaseOrder(input: { supplierId: string; warehouse: string; lines: { sku: string; quantity: number }[] }): Promise<PurchaseOrderView> {
    const seen = new Set<string>()
    input.lines.forEach((line, i) => {
      if (seen.has(line.sku))
        throw new Invalid(`SKU ${line.sku} appears on more than one line`, [{ path: `/lines/${i}/sku`, message: 'duplicate SKU' }], 'DUPLICATE_LINE')
      seen.add(line.sku)
    })
    await this.requireSupplier(input.supplierId)
    await this.requireWarehouse(input.warehouse)
    for (const line of input.lines) await this.requireItem(line.sku)
    const now = new Date()
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(this.d.t.purchaseOrders)
        .values({
          id: Bun.randomUUIDv7(),
          supplierId: input.supplierId,
          warehouse: input.warehouse,
          status: 'draft',
          lines: input.lines.map((l) => ({ sku: l.sku, quantity: l.quantity })),
          createdAt: now,
          updatedAt: now,
        })
        .returning(),
    )
    return toPurchaseOrderView(row)
  }

  /** Newest first. */
  listPurchaseOrders(filter: { status?: PurchaseOrderStatus; supplierId?: string; warehouse?: string }, limit: number, before?: string) {
    const { purchaseOrders: po } = this.d.t
    return this.d.db.read
      .select()
      .from(po)
      .where(
        and(
          filter.status ? eq(po.status, filter.status) : undefined,
          filter.supplierId ? eq(po.supplierId, filter.supplierId) : undefined,
          filter.warehouse ? eq(po.warehouse, filter.warehouse) : undefined,
          before ? lt(po.id, before) : undefined,
        ),
      )
      .orderBy(desc(po.id))
      .limit(limit)
  }

  async getPurchaseOrder(id: string): Promise<PurchaseOrderView> {
    const { purchaseOrders: po } = this.d.t
    const [row] = await this.d.db.read.select().from(po).where(eq(po.id, id))
    if (!row) throw new NotFound(`no purchase order ${id}`, 'PURCHASE_ORDER_NOT_FOUND')
    return toPurchaseOrderView(row)
  }

  /** draft → ordered. */
  order(id: string) {
    return this.poTx((tx) => this.transition(tx, id, ['draft'], 'ordered'))
  }

  /** draft | ordered → cancelled. */
  cancel(id: string) {
    return this.poTx((tx) => this.transition(tx, id, ['draft', 'ordered'], 'cancelled'))
  }

  /** ordered → received: every line's quantity is added to stock, one movement each (`po:<id>`). */
  receive(id: string) {
    return this.poTx(async (tx) => {
      const row = await this.transition(tx, id, ['ordered'], 'received')
      const changed: Level[] = []
      // In SKU order, so two receipts touching the same levels lock them in the same order.
      for (const line of [...row.lines].sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0))) {
        await this.ensureRoom(tx, line.sku, row.warehouse, line.quantity)
        const level = await this.d.ledger.adjust(tx, {
          sku: line.sku,
          warehouse: row.warehouse,
          delta: line.quantity,
          reason: 'purchase order received',
          source: `po:${row.id}`,
        })
        if (level) changed.push(level)
      }
      await this.d.ledger.announce(tx, changed)
      return row
    })
  }

  private async poTx(fn: (tx: Db) => Promise<PurchaseOrderRow>): Promise<PurchaseOrderView> {
    return toPurchaseOrderView(await this.d.db.transaction(fn))
  }

  /** Moves a purchase order from one of `from` to `to`, or says why it cannot (404, 409 naming its status). */
  private async transition(tx: Db, id: string, from: PurchaseOrderStatus[], to: PurchaseOrderStatus): Promise<PurchaseOrderRow> {
    const { purchaseOrders: po } = this.d.t
    const [row] = await tx
      .update(po)
      .set({ status: to, updatedAt: new Date() })
      .where(and(eq(po.id, id), or(...from.map((s) => eq(po.status, s)))))
      .returning()
    if (row) return row
    const [current] = await tx.select({ status: po.status }).from(po).where(eq(po.id, id))
    if (!current) throw new NotFound(`no purchase order ${id}`, 'PURCHASE_ORDER_NOT_FOUND')
    throw new Conflict(`purchase order ${id} is ${current.status}; only a ${from.join(' or ')} one can become ${to}`, 'INVALID_STATUS_TRANSITION')
  }

  // ---------------------------------------------------------------------------------------------
  // alerts
  // ---------------------------------------------------------------------------------------------

  /** Newest first. */
  listAlerts(filter: { type?: string; sku?: string; warehouse?: string }, limit: number, before?: string) {
    const { alerts } = this.d.t
    return this.d.db.read
      .select()
      .from(alerts)
      .where(
        and(
          filter.type ? eq(alerts.type, filter.type) : undefined,
          filter.sku ? eq(alerts.sku, filter.sku) : undefined,
          filter.warehouse ? eq(alerts.warehouse, filter.warehouse) : undefined,
          before ? lt(alerts.id, before) : undefined,
        ),
      )
      .orderBy(desc(alerts.id))
      .limit(limit)
  }

  // ---------------------------------------------------------------------------------------------
  // helpers
  // ---------------------------------------------------------------------------------------------

  private levelWhere(sku: string, warehouse: string): SQL | undefined {
    const { levels } = this.d.t
    return and(eq(levels.sku, sku), eq(levels.warehouse, warehouse))
  }

  private async findItem(db: Pick<Db, 'select'>, idOrSku: string): Promise<ItemRow> {
    const { items } = this.d.t
    const rows = await db
      .select()
      .from(items)
      .where(or(eq(items.id, idOrSku), eq(items.sku, idOrSku)))
    const row = rows.find((r) => r.id === idOrSku) ?? rows[0]
    if (!row) throw new NotFound(`no item ${idOrSku}`, 'ITEM_NOT_FOUND')
    return row
  }

  private async requireItem(sku: string) {
    const { items } = this.d.t
    const [row] = await this.d.db.read.select({ id: items.id }).from(items).where(eq(items.sku, sku))
    if (!row) throw new NotFound(`no item with SKU ${sku}`, 'ITEM_NOT_FOUND')
  }

  private async requireWarehouse(code: string) {
    const { warehouses } = this.d.t
    const [row] = await this.d.db.read.select({ id: warehouses.id }).from(warehouses).where(eq(warehouses.code, code))
    if (!row) throw new NotFound(`no warehouse ${code}`, 'WAREHOUSE_NOT_FOUND')
  }

  private async requirePair(sku: string, warehouse: string) {
    await this.requireItem(sku)
    await this.requireWarehouse(warehouse)
  }

  private async pairExists(sku: string, warehouse: string) {
    try {
      await this.requirePair(sku, warehouse)
      return true
    } catch (error) {
      if (error instanceof NotFound) return false
      throw error
    }
  }

  private async requireSupplier(id: string): Promise<SupplierRow> {
    const { suppliers } = this.d.t
    const [row] = await this.d.db.read.select().from(suppliers).where(eq(suppliers.id, id))
    if (!row) throw new NotFound(`no supplier ${id}`, 'SUPPLIER_NOT_FOUND')
    return row
  }

  /** Refuses an increase that would take onHand past what the column holds. */
  private async ensureRoom(tx: Db, sku: string, warehouse: string, delta: number) {
    if (delta <= 0) return
    const level = await this.d.ledger.level(tx, sku, warehouse)
    if ((level?.onHand ?? 0) + delta > MAX_ON_HAND)
      throw new Invalid(`${sku} in ${warehouse} cannot hold more than ${MAX_ON_HAND}`, undefined, 'QUANTITY_TOO_LARGE')
  }
}
