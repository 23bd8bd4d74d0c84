/**
 * The side effects a cancellation or a received return owes: goods back on hand
 * (inventory.restock, once per reference) and money back (payments.refund, once per key). The
 * intent is written in the transaction that changes the order's status; it is then performed at
 * once and, should that fail or the process die, by the sweep (a lease keeps replicas apart).
 */
import { and, eq, lt, sql } from 'drizzle-orm'
import type { Call } from '../../kernel/calls'
import type { Database, Db, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import type { PluginContext } from '../../kernel/plugin'
import type { Allocation, OrdersSchema } from './schema'

type T = Tables<OrdersSchema>
type EffectRow = T['effects']['$inferSelect']

const SWEEP_BATCH = 20

export interface EffectIntent {
  kind: 'cancel' | 'return'
  orderId: string
  returnId?: string
  restockReference: string
  restock: Allocation[]
  paymentId: string
  refundAmount: number
  refundKey: string
}

export class SideEffects {
  constructor(
    private readonly d: {
      db: Database
      t: T
      call: Call
      publish: PluginContext['events']['publish']
      log: Logger
      leaseMs: number
      callTimeoutMs: number
    },
  ) {}

  /** Records the intent inside the caller's transaction, leased to this caller so the sweep waits for it. */
  async record(tx: Db, intent: EffectIntent): Promise<EffectRow> {
    const now = new Date()
    const [row] = await tx
      .insert(this.d.t.effects)
      .values({ id: Bun.randomUUIDv7(), ...intent, returnId: intent.returnId ?? null, status: 'pending', leaseUntil: new Date(now.getTime() + this.d.leaseMs), createdAt: now })
      .returning()
    return row
  }

  /** Performs it now; a failure is left to the sweep (the caller's state change stands either way). */
  async performSoon(row: EffectRow): Promise<void> {
    await this.perform(row).catch((error) => this.d.log.warn({ err: error, effect: row.id }, 'order side effect failed; the sweep retries it'))
  }

  /** Pending effects whose lease ran out (their performer failed or died), claimed and performed. */
  async sweep(): Promise<void> {
    const { effects } = this.d.t
    const now = new Date()
    const due = await this.d.db.read
      .select()
      .from(effects)
      .where(and(eq(effects.status, 'pending'), lt(effects.leaseUntil, now)))
      .orderBy(effects.leaseUntil)
      .limit(SWEEP_BATCH)
    for (const row of due) {
      const [claimed] = await this.d.db.transaction((tx) =>
        tx
          .update(effects)
          .set({ leaseUntil: new Date(now.getTime() + this.d.leaseMs), attempts: sql`${effects.attempts} + 1` })
          .where(and(eq(effects.id, row.id), eq(effects.status, 'pending'), lt(effects.leaseUntil, now)))
          .returning(),
      )
      if (claimed) await this.performSoon(claimed)
    }
  }

  private async perform(row: EffectRow) {
    const options = { timeoutMs: this.d.callTimeoutMs }
    try {
      if (row.restock.length)
        await this.d.call(
          'inventory.restock',
          { reference: row.restockReference, reason: row.kind === 'cancel' ? 'order cancelled' : 'return received', lines: row.restock },
          options,
        )
      if (row.refundAmount > 0) await this.d.call('payments.refund', { paymentId: row.paymentId, amount: row.refundAmount, key: row.refundKey }, options)
    } catch (error) {
      const { effects } = this.d.t
      // Retried by the sweep once the lease is over.
      await this.d.db.transaction((tx) =>
        tx
          .update(effects)
          .set({ lastError: String((error as Error)?.message ?? error).slice(0, 500), leaseUntil: new Date() })
          .where(eq(effects.id, row.id)),
      )
      throw error
    }
    await this.d.db.transaction(async (tx) => {
      const { effects, orders } = this.d.t
      const [done] = await tx
        .update(effects)
        .set({ status: 'done', doneAt: new Date(), lastError: null })
        .where(and(eq(effects.id, row.id), eq(effects.status, 'pending')))
        .returning()
      if (!done) return // done by another performer meanwhile
      await tx
        .update(orders)
        .set({ refunded: sql`${orders.refunded} + ${row.refundAmount}`, updatedAt: new Date() })
        .where(eq(orders.id, row.orderId))
      if (row.kind === 'return' && row.returnId)
        await this.d.publish('order.return.received', { returnId: row.returnId, orderId: row.orderId, refunded: row.refundAmount })
    })
  }
}
