/**
 * The one way onHand changes: every change goes through `adjust` or `count`, inside the caller's
 * transaction, and writes its movement row. Conditional updates settle races in the database.
 * `announce` publishes stock.changed (once per level per call) and raises low-stock alerts once.
 */
import { and, eq, gt, gte, isNull, sql } from 'drizzle-orm'
import { type Database, type Db, inListed, type Params, type Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import { raiseAlert } from './alerts'
import type { InventorySchema } from './schema'
import { partOf } from './staging'

export interface Level {
  sku: string
  warehouse: string
  onHand: number
  reserved: number
  available: number
}

type LevelRow = Tables<InventorySchema>['levels']['$inferSelect']
/** Level rows by levelKey. */
export type LevelRows = Map<string, LevelRow>
export const toLevel = (r: LevelRow): Level => ({ sku: r.sku, warehouse: r.warehouse, onHand: r.onHand, reserved: r.reserved, available: r.onHand - r.reserved })

/** sku + warehouse, as a map key. */
export const levelKey = (sku: string, warehouse: string) => `${sku}\u0000${warehouse}`
/** Reorder rules per SKU. */
export type ReorderRules = Map<string, { reorderPoint: number | null; reorderQuantity: number | null }>
/** Whether a level's low-stock alert is open, by levelKey. */
export type AlertFlags = Map<string, boolean>

export interface SensorReading {
  ts: number
  type: 'delta' | 'count'
  value: number
  reason: string
  source: string
}

/** The readings for one level, in the order they arrived. */
export interface SensorGroup {
  sku: string
  warehouse: string
  readings: SensorReading[]
}

export interface Movement {
  sku: string
  warehouse: string
  reason: string
  source: string
  at?: Date
}

export class Ledger {
  /** The statements of every commit and manual movement, built once. */
  private readonly q

  constructor(
    private readonly db: Database,
    private readonly t: Tables<InventorySchema>,
    private readonly events: PluginContext['events'],
  ) {
    const { levels, items } = t
    type At = { sku: string; warehouse: string }
    const at = (p: Params<At>) => and(eq(levels.sku, p('sku')), eq(levels.warehouse, p('warehouse')))
    const change = (q: Db, p: Params<At & { delta: number; now: Date }>) =>
      q.update(levels).set({ onHand: sql`${levels.onHand} + ${p('delta', levels.onHand)}`, updatedAt: p('now', levels.updatedAt) })
    this.q = {
      adjust: db.prepare('inventory.adjust', (q, p: Params<At & { delta: number; now: Date }>) => change(q, p).where(at(p)).returning()),
      adjustKeepingAvailable: db.prepare('inventory.adjustKeepingAvailable', (q, p: Params<At & { delta: number; now: Date }>) =>
        change(q, p)
          .where(and(at(p), gte(sql`${levels.onHand} - ${levels.reserved} + ${p('delta', levels.onHand)}`, 0)))
          .returning(),
      ),
      takeReserved: db.prepare('inventory.takeReserved', (q, p: Params<At & { quantity: number; now: Date }>) =>
        q
          .update(levels)
          .set({
            onHand: sql`${levels.onHand} - ${p('quantity', levels.onHand)}`,
            reserved: sql`${levels.reserved} - ${p('quantity', levels.reserved)}`,
            updatedAt: p('now', levels.updatedAt),
          })
          .where(at(p))
          .returning(),
      ),
      level: db.prepare('inventory.level', (q, p: Params<At>) => q.select().from(levels).where(at(p))),
      reorderRules: db.prepare('inventory.reorderRules', (q, p: Params<{ sku: string }>) =>
        q.select({ sku: items.sku, reorderPoint: items.reorderPoint, reorderQuantity: items.reorderQuantity }).from(items).where(eq(items.sku, p('sku'))),
      ),
      alertFlags: db.prepare('inventory.alertFlags', (q, p: Params<{ sku: string }>) =>
        q.select({ sku: levels.sku, warehouse: levels.warehouse, lowAlerted: levels.lowAlerted }).from(levels).where(eq(levels.sku, p('sku'))),
      ),
      flipAlert: db.prepare('inventory.flipAlert', (q, p: Params<At & { low: boolean }>) =>
        q
          .update(levels)
          .set({ lowAlerted: p('low', levels.lowAlerted) })
          .where(and(at(p), sql`${levels.lowAlerted} <> ${p('low', levels.lowAlerted)}`))
          .returning({ sku: levels.sku }),
      ),
      // Per ingest batch: the lists bound as JSON arrays, so that the statement is built once, and
      // PostgreSQL prepares one statement rather than one per list length.
      levelsIn: db.prepare('inventory.levelsIn', (q, p: Params<{ skus: string; warehouses: string }>) =>
        q
          .select()
          .from(levels)
          .where(and(inListed(db.dialect, levels.sku, sql`${p('skus')}`), inListed(db.dialect, levels.warehouse, sql`${p('warehouses')}`))),
      ),
    }
  }

  private async ensureLevel(sku: string, warehouse: string) {
    await this.db.insertMany(this.t.levels, [{ sku, warehouse, onHand: 0, reserved: 0, updatedAt: new Date() }], { onConflictDoNothing: true })
  }

  private where(sku: string, warehouse: string) {
    const { levels } = this.t
    return and(eq(levels.sku, sku), eq(levels.warehouse, warehouse))
  }

  private async record(m: Movement, delta: number, onHandAfter: number) {
    await this.db.insertMany(this.t.movements, [
      {
        id: Bun.randomUUIDv7(),
        sku: m.sku,
        warehouse: m.warehouse,
        delta,
        onHandAfter,
        reason: m.reason,
        source: m.source,
        at: m.at ?? new Date(),
      },
    ])
  }

  /**
   * onHand += delta. With `keepAvailable`, refuses (returns undefined) a decrease that would take
   * available below zero; sensors report what physically happened and use `applySensorReadings`.
   */
  async adjust(tx: Db, m: Movement & { delta: number; keepAvailable?: boolean }): Promise<Level | undefined> {
    await this.ensureLevel(m.sku, m.warehouse)
    const statement = m.keepAvailable && m.delta < 0 ? this.q.adjustKeepingAvailable : this.q.adjust
    const [row] = await statement(tx, { sku: m.sku, warehouse: m.warehouse, delta: m.delta, now: new Date() })
    if (!row) return undefined
    if (m.delta !== 0) await this.record(m, m.delta, row.onHand)
    return toLevel(row)
  }

  /**
   * Reserved stock leaves (a committed reservation): onHand and reserved drop by `quantity`
   * together, with its movement.
   */
  async takeReserved(tx: Db, m: Movement & { quantity: number }): Promise<Level | undefined> {
    const [row] = await this.q.takeReserved(tx, { sku: m.sku, warehouse: m.warehouse, quantity: m.quantity, now: new Date() })
    if (!row) return undefined
    await this.record(m, -m.quantity, row.onHand)
    return toLevel(row)
  }

  /**
   * The levels of these SKUs in these warehouses, in one statement (by levelKey; some may not exist).
   * A level that changes after this read is read again alone by `applySensorReadings`.
   */
  async readLevels(tx: Db, at: readonly { sku: string; warehouse: string }[]): Promise<LevelRows> {
    if (at.length === 0) return new Map()
    const skus = [...new Set(at.map((l) => l.sku))]
    const warehouses = [...new Set(at.map((l) => l.warehouse))]
    const rows = await this.q.levelsIn(tx, { skus: JSON.stringify(skus), warehouses: JSON.stringify(warehouses) })
    return new Map(rows.map((l) => [levelKey(l.sku, l.warehouse), l]))
  }

  /**
   * Applies sensor readings, grouped per level in arrival order, with a few statements per level
   * rather than per reading. The rules make the result independent of arrival order:
   * - a delta from no later than the last applied count is part of that count: stale;
   * - a count says onHand was `value` at `ts`; movements recorded after `ts` (deltas that arrived
   *   earlier, adjustments, commits) happened on top of it, so onHand = value + their sum;
   *   a count not newer than the last applied one is stale.
   * Each level is written conditionally on what was read, so a concurrent writer (another replica)
   * makes this level retry instead of being overwritten. `read` is `readLevels` of these levels (or
   * more) in this transaction, which the caller may have sent along with other statements. The
   * movements are `staged` (staging.ts) or written to the ledger's table. Returns the new levels
   * and the stale readings.
   */
  async applySensorReadings(
    tx: Db,
    groups: SensorGroup[],
    read: LevelRows,
    staged: boolean,
  ): Promise<{ levels: Level[]; stale: Set<SensorReading>; alerted: AlertFlags }> {
    const { levels, movementsRecent } = this.t
    const stale = new Set<SensorReading>()
    const changed: Level[] = []
    const alerted: AlertFlags = new Map()
    if (groups.length === 0) return { levels: changed, stale, alerted }
    const now = new Date()
    // Staged (staging.ts) in the part of their level, or (`part` left out) written straight to the ledger's table.
    const rows: (typeof movementsRecent.$inferInsert)[] = []
    const partFor = (g: SensorGroup) => (staged ? partOf(levelKey(g.sku, g.warehouse)) : (undefined as unknown as number))
    // Levels seen for the first time are created (a replica may create them at the same moment), then read.
    const missing = groups.filter((g) => !read.has(levelKey(g.sku, g.warehouse)))
    if (missing.length) {
      await this.db.insertMany(levels, missing.map((g) => ({ sku: g.sku, warehouse: g.warehouse, onHand: 0, reserved: 0, updatedAt: now })), { onConflictDoNothing: true })
      read = await this.readLevels(tx, groups)
    }
    // Levels that only receive deltas newer than their last count take one statement for all of
    // them: onHand += the sum, on condition that no count newer than the earliest delta landed since.
    const slow: SensorGroup[] = []
    const fast = groups.filter((g) => {
      const before = read.get(levelKey(g.sku, g.warehouse))!
      const ok = g.readings.every((r) => r.type === 'delta' && (before.lastCountTs === null || r.ts > before.lastCountTs))
      if (!ok) slow.push(g)
      return ok
    })
    // One statement planned once (db.insertMany): onHand += the sum where the guard holds; a level it refuses is not returned.
    const updated = await this.db.insertMany(
      levels,
      fast.map((g) => ({
        sku: g.sku,
        warehouse: g.warehouse,
        onHand: g.readings.reduce((sum, r) => sum + r.value, 0),
        reserved: 0,
        // Only the guard below reads it: the row exists already, so this value is never stored.
        lastCountTs: Math.min(...g.readings.map((r) => r.ts)),
        updatedAt: now,
      })),
      {
        onConflictDoUpdate: {
          target: ['sku', 'warehouse'],
          set: { onHand: sql`${levels.onHand} + excluded.on_hand`, updatedAt: sql`excluded.updated_at` },
          where: sql`coalesce(${levels.lastCountTs}, -1) < excluded.last_count_ts`,
        },
        returning: '*',
      },
    )
    const done = new Map(updated.map((l) => [levelKey(l.sku, l.warehouse), l]))
    for (const g of fast) {
      const row = done.get(levelKey(g.sku, g.warehouse))
      if (!row) {
        slow.push(g) // a count arrived meanwhile: take the careful path
        continue
      }
      const part = partFor(g)
      let onHand = row.onHand - g.readings.reduce((sum, r) => sum + r.value, 0)
      for (const r of g.readings) {
        onHand += r.value
        if (r.value !== 0)
          rows.push({ part, id: Bun.randomUUIDv7(), sku: g.sku, warehouse: g.warehouse, delta: r.value, onHandAfter: onHand, reason: r.reason, source: r.source, at: new Date(r.ts) })
      }
      changed.push(toLevel(row))
      alerted.set(levelKey(row.sku, row.warehouse), row.lowAlerted)
    }
    for (const g of slow) {
      let before = read.get(levelKey(g.sku, g.warehouse))!
      for (;; [before] = await tx.select().from(levels).where(this.where(g.sku, g.warehouse))) {
        let onHand = before.onHand
        let lastCountTs = before.lastCountTs
        const moves: { delta: number; after: number; at: number; r: SensorReading }[] = []
        const staleHere: SensorReading[] = []
        for (const r of g.readings) {
          if (lastCountTs !== null && r.ts <= lastCountTs) {
            staleHere.push(r)
            continue
          }
          if (r.type === 'delta') {
            onHand += r.value
            moves.push({ delta: r.value, after: onHand, at: r.ts, r })
            continue
          }
          const [later] = await this.laterMovements(tx, g.sku, g.warehouse, new Date(r.ts))
          const inBatch = moves.filter((m) => m.at > r.ts).reduce((sum, m) => sum + m.delta, 0)
          const counted = r.value + Number(later?.sum ?? 0) + inBatch
          moves.push({ delta: counted - onHand, after: counted, at: r.ts, r })
          onHand = counted
          lastCountTs = r.ts
        }
        const [row] = await tx
          .update(levels)
          .set({ onHand, lastCountTs, updatedAt: now })
          .where(
            and(
              this.where(g.sku, g.warehouse),
              eq(levels.onHand, before.onHand),
              before.lastCountTs === null ? isNull(levels.lastCountTs) : eq(levels.lastCountTs, before.lastCountTs),
            ),
          )
          .returning()
        if (!row) continue
        for (const r of staleHere) stale.add(r)
        for (const m of moves)
          if (m.delta !== 0)
            rows.push({ part: partFor(g), id: Bun.randomUUIDv7(), sku: g.sku, warehouse: g.warehouse, delta: m.delta, onHandAfter: m.after, reason: m.r.reason, source: m.r.source, at: new Date(m.at) })
        changed.push(toLevel(row))
        alerted.set(levelKey(row.sku, row.warehouse), row.lowAlerted)
        break
      }
    }
    await this.db.insertMany(staged ? movementsRecent : this.t.movements, rows)
    return { levels: changed, stale, alerted }
  }

  /** The sum of a level's movements dated after `after`, staged or not (staging.ts), in one statement. */
  private laterMovements(tx: Db, sku: string, warehouse: string, after: Date) {
    const { movements, movementsRecent: recent } = this.t
    const sum = (m: typeof movements | typeof recent) =>
      tx
        .select({ sum: sql<number | string | null>`coalesce(sum(${m.delta}), 0)`.as('sum') })
        .from(m)
        .where(and(eq(m.sku, sku), eq(m.warehouse, warehouse), gt(m.at, after), m === recent ? eq(recent.part, partOf(levelKey(sku, warehouse))) : undefined))
    return tx.select({ sum: sql<number | string | null>`sum(${sql.identifier('sum')})` }).from(sum(movements).unionAll(sum(recent)).as('sums'))
  }

  async level(tx: Db, sku: string, warehouse: string): Promise<Level | undefined> {
    const [row] = await this.q.level(tx, { sku, warehouse })
    return row ? toLevel(row) : undefined
  }

  /**
   * Publishes stock.changed for each level (the last state per SKU and warehouse) and raises a
   * low-stock alert when available fell to the reorder point, once until it recovers.
   */
  async announce(tx: Db, changed: Level[], known: { items?: ReorderRules; alerted?: AlertFlags } = {}) {
    const latest = [...new Map(changed.map((l) => [levelKey(l.sku, l.warehouse), l])).values()]
    if (latest.length === 0) return
    const skus = [...new Set(latest.map((l) => l.sku))]
    // What the caller read or wrote in this transaction already is not read again; the rest, one SKU at a time (a handful).
    let reorder = known.items
    if (!reorder) {
      reorder = new Map()
      for (const sku of skus) for (const i of await this.q.reorderRules(tx, { sku })) reorder.set(i.sku, i)
    }
    let alerted = known.alerted
    if (!alerted) {
      alerted = new Map()
      for (const sku of skus) for (const l of await this.q.alertFlags(tx, { sku })) alerted.set(levelKey(l.sku, l.warehouse), l.lowAlerted)
    }
    await this.events.publishAll('inventory.stock.changed', latest)
    for (const level of latest) {
      const item = reorder.get(level.sku)
      if (!item || item.reorderPoint === null) continue
      const low = level.available <= item.reorderPoint
      if (alerted.get(levelKey(level.sku, level.warehouse)) === low) continue
      // Flip the flag conditionally: only the transaction that flips it raises the alert.
      const [flipped] = await this.q.flipAlert(tx, { sku: level.sku, warehouse: level.warehouse, low })
      if (!flipped || !low) continue
      await raiseAlert(tx, this.t, this.events, {
        type: 'low_stock',
        sku: level.sku,
        warehouse: level.warehouse,
        message: `${level.sku} in ${level.warehouse}: ${level.available} available, reorder point ${item.reorderPoint}`,
      })
      await this.events.publish('inventory.stock.low', {
        sku: level.sku,
        warehouse: level.warehouse,
        available: level.available,
        reorderPoint: item.reorderPoint,
        reorderQuantity: item.reorderQuantity,
      })
    }
  }

}
