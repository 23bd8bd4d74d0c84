/**
 * Outbound replies to inbound channels. A delivery row is written in the transaction that stores
 * the agent's message (so a crash loses nothing), then any process claims due rows with a lease,
 * sends each with a few quick retries (cockatiel: timeout + exponential backoff), and on failure
 * schedules the next attempt further out, until CHAT_DELIVERY_MAX_ATTEMPTS parks it as failed.
 * The HTTP call happens outside any database transaction.
 */
import { and, asc, desc, eq, inArray, isNull, lt, lte, or } from 'drizzle-orm'
import { ExponentialBackoff, handleWhen, retry, timeout, TimeoutStrategy, wrap } from 'cockatiel'
import type { Database, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import { type Channels, outboundRequest } from './channels'
import type { ChatSchema } from './schema'
import { Sweeper } from '../../shared/sweeper'

type T = Tables<ChatSchema>

const LEASE_MS = 60_000
const BATCH = 20

export interface DeliverySettings {
  maxAttempts: number
  /** delay before the second round of attempts; doubles each round, up to 10 minutes */
  retryBaseMs: number
  timeoutMs: number
}

/** A refusal the channel will repeat however often it is asked (4xx other than 408 and 429). */
class Permanent extends Error {}

export class Deliveries {
  private readonly sweeper = new Sweeper(
    () => this.sweep(),
    (error) => this.log.error({ err: error }, 'delivery sweep failed'),
  )
  private stopped = false
  private readonly send

  constructor(
    private readonly db: Database,
    private readonly t: T,
    private readonly channels: Channels,
    private readonly settings: DeliverySettings,
    private readonly log: Logger,
  ) {
    // Quick retries inside one round: a blip of the receiver costs milliseconds, not a round.
    this.send = wrap(
      retry(
        handleWhen((e) => !(e instanceof Permanent)),
        { maxAttempts: 2, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }) },
      ),
      timeout(settings.timeoutMs, TimeoutStrategy.Aggressive),
    )
  }

  /** Asks for a sweep; sweeps never overlap, and a nudge during one causes another. */
  nudge() {
    if (!this.stopped) this.sweeper.nudge()
  }

  async stop() {
    this.stopped = true
    await this.sweeper.stop()
  }

  private async sweep() {
    for (;;) {
      const rows = await this.claim()
      await Promise.all(rows.map((row) => this.deliver(row)))
      if (rows.length < BATCH || this.stopped) return
    }
  }

  private async claim() {
    const { deliveries } = this.t
    const now = new Date()
    const due = and(
      isNull(deliveries.deliveredAt),
      isNull(deliveries.failedAt),
      lte(deliveries.nextAttemptAt, now),
      or(isNull(deliveries.leaseUntil), lt(deliveries.leaseUntil, now)),
    )
    return this.db.transaction(async (tx) => {
      const ids = await tx.select({ id: deliveries.id }).from(deliveries).where(due).orderBy(asc(deliveries.nextAttemptAt)).limit(BATCH)
      if (ids.length === 0) return []
      return tx
        .update(deliveries)
        .set({ leaseUntil: new Date(now.getTime() + LEASE_MS) })
        .where(and(inArray(deliveries.id, ids.map((r) => r.id)), due))
        .returning()
    })
  }

  private async deliver(row: T['deliveries']['$inferSelect']) {
    const { deliveries } = this.t
    const config = this.channels[row.channel]
    let error: string | undefined
    let permanent = false
    try {
      if (!config) throw new Permanent(`channel ${row.channel} is no longer configured`)
      const { url, init } = outboundRequest(config, {
        deliveryId: row.id,
        messageId: row.messageId,
        conversationId: row.conversationId,
        to: row.externalUserId,
        text: row.body,
        createdAt: row.createdAt,
      })
      await this.send.execute(async ({ signal }) => {
        const res = await fetch(url, { ...init, signal })
        await res.body?.cancel().catch(() => {})
        if (res.ok) return
        const why = `the channel answered ${res.status}`
        throw res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429 ? new Permanent(why) : new Error(why)
      })
    } catch (e) {
      permanent = e instanceof Permanent
      error = e instanceof Error ? e.message : String(e)
    }
    const attempts = row.attempts + 1
    const now = new Date()
    if (error === undefined) {
      await this.db.transaction((tx) => tx.update(deliveries).set({ deliveredAt: now, attempts, leaseUntil: null, lastError: null }).where(eq(deliveries.id, row.id)))
      return
    }
    const failed = permanent || attempts >= this.settings.maxAttempts
    const wait = Math.min(this.settings.retryBaseMs * 2 ** (attempts - 1), 600_000)
    await this.db.transaction((tx) =>
      tx
        .update(deliveries)
        .set({ attempts, leaseUntil: null, lastError: error.slice(0, 1000), ...(failed ? { failedAt: now } : { nextAttemptAt: new Date(now.getTime() + wait) }) })
        .where(eq(deliveries.id, row.id)),
    )
    if (failed) this.log.error({ deliveryId: row.id, channel: row.channel, attempts, error }, 'reply to an inbound channel failed for good')
    else this.log.warn({ deliveryId: row.id, channel: row.channel, attempts, error, retryInMs: wait }, 'reply to an inbound channel failed; will retry')
  }

  /** Deliveries, newest first (for the admin view). */
  list(limit: number, before?: string) {
    const { deliveries } = this.t
    return this.db.read
      .select()
      .from(deliveries)
      .where(before ? lt(deliveries.id, before) : undefined)
      .orderBy(desc(deliveries.id))
      .limit(limit)
  }
}
