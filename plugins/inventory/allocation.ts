/**
 * Stock held and given back by reference, for other plugins' multi-line work (a checkout, a
 * cancellation, a return) without their knowing warehouses or reservation ids:
 * - `reserveLines`: every line reserved or none, warehouses chosen here;
 * - `commitReference` / `releaseReference`: every reservation of the reference at once;
 * - `restock`: goods back on hand through the ledger.
 * Each is once per reference: a row in `inventory_references`, written in the transaction that
 * does the work, makes a retried or concurrent call wait for the first and return its result.
 */
import { and, asc, eq, gt, inArray, sql } from 'drizzle-orm'
import type { Database, Db, Params, Reader, Tables } from '../../kernel/db'
import { Conflict, type ErrorDetail, NotFound } from '../../shared/errors'
import type { Ledger, Level } from './ledger'
import { toLevel } from './ledger'
import type { InventorySchema } from './schema'
import { MAX_ON_HAND, type ReservationView, type StockService, toReservationView } from './service'

type T = Tables<InventorySchema>
type Line = { sku: string; quantity: number }
/** A line as planned: its SKU's total, and where the caller first named it (for error paths). */
type PlannedLine = Line & { index: number }
type Hold = { sku: string; warehouse: string; quantity: number }

/** A concurrent change beat the plan between reading and reserving: plan again. */
class Outplanned extends Error {}
/** Not enough stock for these lines, as planned. */
class Short extends Error {
  constructor(readonly details: ErrorDetail[]) {
    super('short')
  }
}
/** Some reservation of the reference would not commit: none does, and the reason is looked up. */
class Uncommitted extends Error {}
const PLANNING_ATTEMPTS = 5

export class Allocations {
  /** The statements of every checkout's reservation and commit, built once. */
  private readonly q

  constructor(
    private readonly d: { db: Database; t: T; ledger: Ledger; stock: StockService; defaultTtlSeconds: number },
  ) {
    const { db, t } = d
    const { levels, reservations, items } = t
    this.q = {
      ofReference: db.prepare('inventory.reservationsOf', (q, p: Params<{ reference: string }>) =>
        q.select().from(reservations).where(eq(reservations.reference, p('reference'))).orderBy(asc(reservations.id)),
      ),
      activeOfReference: db.prepare('inventory.activeReservationsOf', (q, p: Params<{ reference: string }>) =>
        q
          .select({ id: reservations.id })
          .from(reservations)
          .where(and(eq(reservations.reference, p('reference')), eq(reservations.status, 'active'))),
      ),
      hold: db.prepare('inventory.hold', (q, p: Params<{ sku: string; warehouse: string; quantity: number; now: Date }>) =>
        q
          .update(levels)
          .set({ reserved: sql`${levels.reserved} + ${p('quantity', levels.reserved)}`, updatedAt: p('now', levels.updatedAt) })
          .where(and(eq(levels.sku, p('sku')), eq(levels.warehouse, p('warehouse')), sql`${levels.onHand} - ${levels.reserved} >= ${p('quantity', levels.reserved)}`))
          .returning(),
      ),
      levelsOf: db.prepare('inventory.levelsOfSku', (q, p: Params<{ sku: string }>) => q.select().from(levels).where(eq(levels.sku, p('sku')))),
      item: db.prepare('inventory.itemBySku', (q, p: Params<{ sku: string }>) => q.select({ sku: items.sku }).from(items).where(eq(items.sku, p('sku')))),
      commit: db.prepare('inventory.commitReference', (q, p: Params<{ reference: string; now: Date }>) =>
        q
          .update(reservations)
          .set({ status: 'committed' })
          .where(and(eq(reservations.reference, p('reference')), eq(reservations.status, 'active'), gt(reservations.expiresAt, p('now', reservations.expiresAt))))
          .returning(),
      ),
    }
  }

  /**
   * Reserves every line or none. Each line comes from one warehouse when one has enough (the one
   * with most available), else from several, fullest first. The plan is made from a read, then
   * carried out by conditional updates in (sku, warehouse) order, so concurrent allocations lock
   * rows in one order and never deadlock; if another took the stock in between, it plans again.
   * Only a plan that comes up short checks that every SKU is an item and frees stock held past its
   * expiry, then plans once more: stock that suffices needs neither.
   */
  async reserveLines(input: { reference: string; lines: Line[]; ttlSeconds?: number }): Promise<ReservationView[]> {
    const lines = mergeLines(input.lines)
    let freed = false
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.d.db.transaction(async (tx) => {
          if (!(await this.claim(tx, 'allocation', input.reference))) return this.reservationsOf(tx, input.reference)
          const holds = await this.plan(tx, lines)
          return this.hold(tx, holds, input.reference, input.ttlSeconds ?? this.d.defaultTtlSeconds)
        })
      } catch (error) {
        if (error instanceof Short && !freed) {
          freed = true
          await this.requireItems(lines.map((l) => l.sku))
          // Stock held past its expiry is free before anyone is told there is none.
          if ((await this.d.stock.expireDue({})) > 0) continue
        }
        if (error instanceof Short) throw outOfStock(error.details)
        if (!(error instanceof Outplanned) || attempt === PLANNING_ATTEMPTS) throw error instanceof Outplanned ? outOfStock([]) : error
      }
    }
  }

  /**
   * Commits every reservation of the reference in one transaction: all of its stock leaves, or,
   * when one lapsed or was released first, none does (409). Committed ones stay as they are.
   * The commit is tried first; only when some reservation would not commit are lapsed ones
   * expired (in their own transactions) and the reason told.
   */
  async commitReference(reference: string): Promise<ReservationView[]> {
    try {
      return await this.d.db.transaction(async (tx) => {
        const committed = await this.q.commit(tx, { reference, now: new Date() })
        const after = await this.reservationsOf(tx, reference)
        if (after.length === 0 || after.some((r) => r.status !== 'committed')) throw new Uncommitted()
        const changed: Level[] = []
        for (const row of committed.sort(byLevel)) {
          const level = await this.d.ledger.takeReserved(tx, { sku: row.sku, warehouse: row.warehouse, quantity: row.quantity, reason: 'reservation committed', source: `reservation:${row.id}` })
          if (level) changed.push(level)
        }
        await this.d.ledger.announce(tx, changed)
        return after
      })
    } catch (error) {
      if (!(error instanceof Uncommitted)) throw error
    }
    const rows = await this.reservations(reference)
    const lapsed = rows.find((r) => r.status === 'expired' || r.status === 'released')
    if (lapsed)
      throw new Conflict(`reservation ${lapsed.id} of ${reference} is ${lapsed.status}`, lapsed.status === 'expired' ? 'RESERVATION_EXPIRED' : 'RESERVATION_RELEASED')
    if (rows.length === 0) throw new NotFound(`no reservations for ${reference}`, 'RESERVATION_NOT_FOUND')
    const left = rows.find((r) => r.status !== 'committed')
    throw new Conflict(`reservation ${left?.id ?? ''} of ${reference} lapsed before it was committed`, 'RESERVATION_EXPIRED')
  }

  /** Releases every active reservation of the reference; committed ones stay committed. */
  async releaseReference(reference: string): Promise<ReservationView[]> {
    const done: ReservationView[] = []
    for (const r of await this.reservations(reference)) done.push(r.status === 'active' ? await this.releaseQuietly(r) : r)
    return done
  }

  /** Puts the lines back on hand, once per reference; a repeat returns the levels as they are now. */
  async restock(input: { reference: string; reason: string; lines: Hold[] }): Promise<Level[]> {
    const lines = [...input.lines].sort(byLevel)
    await this.requireItems(lines.map((l) => l.sku))
    await this.requireWarehouses(lines.map((l) => l.warehouse))
    return this.d.db.transaction(async (tx) => {
      if (!(await this.claim(tx, 'restock', input.reference))) return this.levelsOf(tx, lines)
      const changed: Level[] = []
      for (const line of lines) {
        const current = await this.d.ledger.level(tx, line.sku, line.warehouse)
        if ((current?.onHand ?? 0) + line.quantity > MAX_ON_HAND)
          throw new Conflict(`${line.sku} in ${line.warehouse} cannot hold more than ${MAX_ON_HAND}`, 'QUANTITY_TOO_LARGE')
        const level = await this.d.ledger.adjust(tx, { ...line, delta: line.quantity, reason: input.reason, source: `restock:${input.reference}` })
        if (level) changed.push(level)
      }
      await this.d.ledger.announce(tx, changed)
      return changed
    })
  }

  // ---------------------------------------------------------------------------------------------

  /** True when this transaction is the first to claim the reference (a concurrent one waits for it). */
  private async claim(tx: Db, kind: 'allocation' | 'restock', reference: string): Promise<boolean> {
    const rows = await this.d.db.insertMany(this.d.t.references, [{ kind, reference, createdAt: new Date() }], { onConflictDoNothing: true, returning: 'reference' })
    return rows.length > 0
  }

  private async plan(tx: Db, lines: PlannedLine[]): Promise<Hold[]> {
    const rows: T['levels']['$inferSelect'][] = []
    for (const line of lines) rows.push(...(await this.q.levelsOf(tx, { sku: line.sku })))
    const holds: Hold[] = []
    const short: ErrorDetail[] = []
    for (const line of lines) {
      const options = rows
        .filter((r) => r.sku === line.sku && r.onHand - r.reserved > 0)
        .map((r) => ({ warehouse: r.warehouse, available: r.onHand - r.reserved }))
        .sort((a, b) => b.available - a.available || a.warehouse.localeCompare(b.warehouse))
      const total = options.reduce((n, o) => n + o.available, 0)
      if (total < line.quantity) {
        short.push({ path: `/lines/${line.index}`, message: `${line.sku}: ${total} available, ${line.quantity} requested` })
        continue
      }
      const whole = options.find((o) => o.available >= line.quantity)
      if (whole) {
        holds.push({ sku: line.sku, warehouse: whole.warehouse, quantity: line.quantity })
        continue
      }
      let left = line.quantity
      for (const o of options) {
        if (left === 0) break
        const q = Math.min(left, o.available)
        holds.push({ sku: line.sku, warehouse: o.warehouse, quantity: q })
        left -= q
      }
    }
    if (short.length) throw new Short(short)
    return holds.sort(byLevel)
  }

  private async hold(tx: Db, holds: Hold[], reference: string, ttlSeconds: number): Promise<ReservationView[]> {
    const now = new Date()
    const changed: Level[] = []
    const rows: T['reservations']['$inferSelect'][] = []
    for (const h of holds) {
      const [level] = await this.q.hold(tx, { ...h, now })
      if (!level) throw new Outplanned()
      changed.push(toLevel(level))
      rows.push({ id: Bun.randomUUIDv7(), ...h, reference, status: 'active', expiresAt: new Date(now.getTime() + ttlSeconds * 1000), createdAt: now })
    }
    await this.d.db.insertMany(this.d.t.reservations, rows)
    await this.d.ledger.announce(tx, changed)
    return rows.map(toReservationView)
  }

  /** Releases one, tolerating a concurrent commit/release/expiry (it then reports what stands). */
  private async releaseQuietly(r: ReservationView): Promise<ReservationView> {
    try {
      return await this.d.stock.release(r.id)
    } catch (error) {
      if (error instanceof Conflict) return this.d.stock.getReservation(r.id)
      throw error
    }
  }

  /** The reference's reservations after any due expiry was applied, oldest first. */
  private async reservations(reference: string): Promise<ReservationView[]> {
    const due = await this.q.activeOfReference(this.d.db.read, { reference })
    for (const { id } of due) await this.d.stock.expireDue({ id })
    return this.reservationsOf(this.d.db.read, reference)
  }

  private async reservationsOf(on: Db | Reader, reference: string): Promise<ReservationView[]> {
    const rows = await this.q.ofReference(on, { reference })
    return rows.map(toReservationView)
  }

  private async levelsOf(tx: Db, lines: Hold[]): Promise<Level[]> {
    const out: Level[] = []
    for (const l of lines) {
      const level = await this.d.ledger.level(tx, l.sku, l.warehouse)
      if (level) out.push(level)
    }
    return out
  }

  private async requireItems(skus: string[]) {
    const missing: string[] = []
    for (const sku of new Set(skus)) if ((await this.q.item(this.d.db.read, { sku })).length === 0) missing.push(sku)
    if (missing.length) throw new NotFound(`no item with SKU ${missing.join(', ')}`, 'ITEM_NOT_FOUND')
  }

  private async requireWarehouses(codes: string[]) {
    const { warehouses } = this.d.t
    const wanted = [...new Set(codes)]
    const found = new Set((await this.d.db.read.select({ code: warehouses.code }).from(warehouses).where(inArray(warehouses.code, wanted))).map((r) => r.code))
    const missing = wanted.filter((c) => !found.has(c))
    if (missing.length) throw new NotFound(`no warehouse ${missing.join(', ')}`, 'WAREHOUSE_NOT_FOUND')
  }
}

/** One line per SKU (two lines of one SKU are one request for their sum). */
function mergeLines(lines: Line[]): PlannedLine[] {
  const bySku = new Map<string, PlannedLine>()
  lines.forEach((l, index) => {
    const seen = bySku.get(l.sku)
    if (seen) seen.quantity += l.quantity
    else bySku.set(l.sku, { sku: l.sku, quantity: l.quantity, index })
  })
  return [...bySku.values()].sort((a, b) => a.sku.localeCompare(b.sku))
}

const byLevel = (a: { sku: string; warehouse: string }, b: { sku: string; warehouse: string }) =>
  a.sku === b.sku ? a.warehouse.localeCompare(b.warehouse) : a.sku.localeCompare(b.sku)

const outOfStock = (details: ErrorDetail[]) =>
  new Conflict(details.length ? `not enough stock: ${details.map((d) => d.message).join('; ')}` : 'not enough stock: others took it first', 'OUT_OF_STOCK', details)
