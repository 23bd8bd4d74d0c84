/**
 * The one way onHand changes: every change goes through `adjust` or `count`, inside the caller's
 * transaction, and writes its movement row. Conditional updates settle races in the database.
 * `announce` publishes stock.changed (once per level per call) and raises low-stock alerts once.
 */
import { and, eq, gt, gte, isNull, lt, or, sql } from 'drizzle-orm'
import type { Db, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { InventorySchema } from './schema'

export interface Level {
  sku: string
  warehouse: string
  onHand: number
  reserved: number
  available: number
}

type LevelRow = Tables<InventorySchema>['levels']['$inferSelect']
export const toLevel = (r: LevelRow): Level => ({ sku: r.sku, warehouse: r.warehouse, onHand: r.onHand, reserved: r.reserved, available: r.onHand - r.reserved })

export interface Movement {
  sku: string
  warehouse: string
  reason: string
  source: string
  at?: Date
}

export class Ledger {
  constructor(
    private readonly t: Tables<InventorySchema>,
    private readonly events: PluginContext['events'],
  ) {}

  private async ensureLevel(tx: Db, sku: string, warehouse: string) {
    await tx.insert(this.t.levels).values({ sku, warehouse, onHand: 0, reserved: 0, updatedAt: new Date() }).onConflictDoNothing()
  }

  private where(sku: string, warehouse: string) {
    const { levels } = this.t
    return and(eq(levels.sku, sku), eq(levels.warehouse, warehouse))
  }

  private async record(tx: Db, m: Movement, delta: number, onHandAfter: number) {
    await tx.insert(this.t.movements).values({
      id: Bun.randomUUIDv7(),
      sku: m.sku,
      warehouse: m.warehouse,
      delta,
      onHandAfter,
      reason: m.reason,
      source: m.source,
      at: m.at ?? new Date(),
    })
  }

  /**
   * onHand += delta. With `keepAvailable`, refuses (returns undefined) a decrease that would take
   * available below zero; sensors report what physically happened, so they do not set it. With
   * `ts` (a sensor's time), a delta from before the last applied count is already part of that
   * count: it is stale (undefined).
   */
  async adjust(tx: Db, m: Movement & { delta: number; keepAvailable?: boolean; ts?: number }): Promise<Level | undefined> {
    const { levels } = this.t
    await this.ensureLevel(tx, m.sku, m.warehouse)
    const available = m.keepAvailable && m.delta < 0 ? gte(sql`${levels.onHand} - ${levels.reserved} + ${m.delta}`, 0) : undefined
    const afterLastCount = m.ts === undefined ? undefined : or(isNull(levels.lastCountTs), lt(levels.lastCountTs, m.ts))
    const [row] = await tx
      .update(levels)
      .set({ onHand: sql`${levels.onHand} + ${m.delta}`, updatedAt: new Date() })
      .where(and(this.where(m.sku, m.warehouse), available, afterLastCount))
      .returning()
    if (!row) return undefined
    if (m.delta !== 0) await this.record(tx, { ...m, at: m.ts === undefined ? m.at : new Date(m.ts) }, m.delta, row.onHand)
    return toLevel(row)
  }

  /**
   * A physical count: onHand was `value` at time `ts`. Movements recorded after `ts` (deltas that
   * arrived before this count, adjustments, commits) happened on top of it, so onHand becomes value
   * plus their sum: the result does not depend on the order readings arrive in. A count not newer
   * than the last applied one is stale (undefined).
   */
  async count(tx: Db, m: Movement & { value: number; ts: number }): Promise<Level | undefined> {
    const { levels, movements } = this.t
    await this.ensureLevel(tx, m.sku, m.warehouse)
    const at = new Date(m.ts)
    for (;;) {
      const [before] = await tx.select().from(levels).where(this.where(m.sku, m.warehouse))
      if (before.lastCountTs !== null && m.ts <= before.lastCountTs) return undefined
      const [since] = await tx
        .select({ sum: sql<number | string | null>`sum(${movements.delta})` })
        .from(movements)
        .where(and(eq(movements.sku, m.sku), eq(movements.warehouse, m.warehouse), gt(movements.at, at)))
      const onHand = m.value + Number(since?.sum ?? 0)
      // Conditional on the value read, so a concurrent change makes this retry instead of being lost.
      const [row] = await tx
        .update(levels)
        .set({ onHand, lastCountTs: m.ts, updatedAt: new Date() })
        .where(and(this.where(m.sku, m.warehouse), eq(levels.onHand, before.onHand)))
        .returning()
      if (!row) continue
      if (onHand !== before.onHand) await this.record(tx, { ...m, at }, onHand - before.onHand, row.onHand)
      return toLevel(row)
    }
  }

  async level(tx: Db, sku: string, warehouse: string): Promise<Level | undefined> {
    const [row] = await tx.select().from(this.t.levels).where(this.where(sku, warehouse))
    return row ? toLevel(row) : undefined
  }

  /**
   * Publishes stock.changed for each level (the last state per SKU and warehouse) and raises a
   * low-stock alert when available fell to the reorder point, once until it recovers.
   */
  async announce(tx: Db, changed: Level[]) {
    const latest = new Map(changed.map((l) => [`${l.sku}\u0000${l.warehouse}`, l]))
    const { items, levels, alerts } = this.t
    for (const level of latest.values()) {
      await this.events.publish('inventory.stock.changed', level)
      const [item] = await tx.select({ reorderPoint: items.reorderPoint, reorderQuantity: items.reorderQuantity }).from(items).where(eq(items.sku, level.sku))
      if (!item || item.reorderPoint === null) continue
      const low = level.available <= item.reorderPoint
      // Flip the flag conditionally: only the transaction that flips it raises the alert.
      const [flipped] = await tx
        .update(levels)
        .set({ lowAlerted: low })
        .where(and(this.where(level.sku, level.warehouse), eq(levels.lowAlerted, !low)))
        .returning({ sku: levels.sku })
      if (!flipped || !low) continue
      await tx.insert(alerts).values({
        id: Bun.randomUUIDv7(),
        type: 'low_stock',
        sku: level.sku,
        warehouse: level.warehouse,
        message: `${level.sku} in ${level.warehouse}: ${level.available} available, reorder point ${item.reorderPoint}`,
        createdAt: new Date(),
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
