/**
 * Wraps every consumer so that delivery is safe to repeat: the handler runs in a transaction
 * together with its processed-event record (a duplicate finds the record and does nothing), a
 * failure is retried with exponential backoff, and after the last attempt the event is parked in
 * the dead-letter table, from where an admin can replay it. A consumer whose handler is idempotent
 * by itself (ConsumerOptions) keeps no record: a duplicate is handled again, to no effect.
 */
import { and, desc, eq, lt } from 'drizzle-orm'
import type { Logger } from 'pino'
import type { Database, Db } from '../db'
import { materialize } from '../db/schema'
import type { ConsumerOptions, Deliver, EventEnvelope } from './port'
import { eventTables } from './schema'

export type EventHandler<T = unknown> = (event: EventEnvelope<T>, tx: Db) => Promise<void>
/** Takes the new events of one consumer that arrived together, as they arrived, inside one transaction. */
export type BatchHandler<T = unknown> = (events: EventEnvelope<T>[], tx: Db) => Promise<void>
export type EventObserver<T = unknown> = (event: EventEnvelope<T>) => void | Promise<void>

/**
 * Best-effort delivery (`ctx.events.observe`): the observer is started and not awaited, so it never
 * holds up the relay or other consumers; a failure is logged and counted, never retried or parked.
 */
export function observer(consumer: string, handler: EventObserver, log: Logger, onOutcome: (consumer: string, outcome: 'observed' | 'observer_failed') => void): Deliver {
  return async (event) => {
    Promise.resolve()
      .then(() => handler(event))
      .then(
        () => onOutcome(consumer, 'observed'),
        (error) => {
          onOutcome(consumer, 'observer_failed')
          log.warn({ err: error, consumer, eventId: event.id, type: event.type }, 'event observer failed')
        },
      )
  }
}

export interface RetryPolicy {
  maxAttempts: number
  baseDelayMs: number
}

export type DeadLetter = typeof eventTables.deadLetters extends { materialize(d: never): infer T }
  ? T extends { $inferSelect: infer R }
    ? R
    : never
  : never

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

type Waiting = { event: EventEnvelope; settle: (outcome: Promise<boolean>) => void }

export class Delivery {
  private readonly t
  private readonly handlers = new Map<string, BatchHandler>()
  /** Consumers that keep no processed-event records (ConsumerOptions.idempotent). */
  private readonly unrecorded = new Set<string>()
  /**
   * Events of one consumer that arrived together, to be handled in one transaction: those of one
   * tick, or all that arrived while the consumer's previous transaction ran.
   */
  private readonly gathered = new Map<string, Waiting[]>()
  /**
   * Consumers with a transaction in flight. One at a time per consumer: transactions of one consumer
   * touch the same rows (the catalog locks the same SKUs), so a second one would only wait for the
   * first while holding a pooled connection; measured on PostgreSQL ingestion, 6–7 of 10 did.
   */
  private readonly busy = new Set<string>()

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    private readonly policy: RetryPolicy,
    private readonly onOutcome: (consumer: string, outcome: 'handled' | 'duplicate' | 'retried' | 'dead_lettered') => void = () => {},
  ) {
    this.t = materialize(eventTables, db.dialect)
  }

  /** The bus-facing delivery function of `consumer`, whose handler takes one event at a time. */
  wrap(consumer: string, handler: EventHandler, options: ConsumerOptions = {}): Deliver {
    return this.wrapBatch(
      consumer,
      async (events, tx) => {
        for (const event of events) await handler(event, tx)
      },
      options,
    )
  }

  /** The same for a handler that takes the events that arrived together at once (one set of statements per batch). */
  wrapBatch(consumer: string, handler: BatchHandler, options: ConsumerOptions = {}): Deliver {
    this.handlers.set(consumer, handler)
    if (options.idempotent) this.unrecorded.add(consumer)
    return async (event) => void (await this.deliver(consumer, handler, event))
  }

  /** Tries the handler up to maxAttempts times; returns true when handled, false when dead-lettered. */
  private async deliver(consumer: string, handler: BatchHandler, event: EventEnvelope): Promise<boolean> {
    let lastError: unknown
    for (let attempt = 1; attempt <= this.policy.maxAttempts; attempt++) {
      try {
        const fresh = await this.handleOnce(consumer, handler, event)
        this.onOutcome(consumer, fresh ? 'handled' : 'duplicate')
        return true
      } catch (error) {
        lastError = error
        this.log.warn({ err: error, consumer, eventId: event.id, type: event.type, attempt }, 'event handler failed')
        if (attempt < this.policy.maxAttempts) {
          this.onOutcome(consumer, 'retried')
          await sleep(this.policy.baseDelayMs * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5))
        }
      }
    }
    await this.park(consumer, event, lastError)
    this.onOutcome(consumer, 'dead_lettered')
    return false
  }

  /**
   * Runs the handler once, atomically with its processed-event record; false when already done.
   * Events of one consumer that arrive together share one transaction (one commit for a relay's
   * batch); when any of them fails, each is run again on its own, so one failure holds back no other.
   */
  private handleOnce(consumer: string, handler: BatchHandler, event: EventEnvelope): Promise<boolean> {
    let waiting = this.gathered.get(consumer)
    if (!waiting) {
      this.gathered.set(consumer, (waiting = []))
      if (!this.busy.has(consumer)) queueMicrotask(() => this.flush(consumer, handler))
    }
    return new Promise<boolean>((resolve) => waiting.push({ event, settle: resolve }))
  }

  /** Handles what the consumer has gathered; when that is over, what gathered meanwhile. */
  private flush(consumer: string, handler: BatchHandler) {
    const waiting = this.gathered.get(consumer)
    if (!waiting) return
    this.gathered.delete(consumer)
    this.busy.add(consumer)
    void this.handleGathered(consumer, handler, waiting).finally(() => {
      this.busy.delete(consumer)
      this.flush(consumer, handler)
    })
  }

  /** Settles every waiting event; resolves once none of them is being handled any more. */
  private async handleGathered(consumer: string, handler: BatchHandler, waiting: Waiting[]) {
    if (waiting.length === 1) {
      const alone = this.handleAlone(consumer, handler, waiting[0]!.event)
      waiting[0]!.settle(alone)
      return void (await alone.catch(() => {}))
    }
    try {
      const fresh = await this.db.transaction((tx) => this.claimAndHandle(consumer, handler, waiting.map((w) => w.event), tx))
      waiting.forEach((w, i) => w.settle(Promise.resolve(fresh[i]!)))
    } catch {
      // One after another, so that a failed batch of hundreds does not take every pooled connection at once.
      let previous: Promise<unknown> = Promise.resolve()
      for (const w of waiting) {
        const alone = previous.then(() => this.handleAlone(consumer, handler, w.event))
        previous = alone.catch(() => {})
        w.settle(alone)
      }
      await previous
    }
  }

  private async handleAlone(consumer: string, handler: BatchHandler, event: EventEnvelope): Promise<boolean> {
    const [fresh] = await this.db.transaction((tx) => this.claimAndHandle(consumer, handler, [event], tx))
    return fresh!
  }

  /**
   * Records every event as processed by `consumer` (one statement) and hands the new ones to the
   * handler; per event, whether it was new (an event already recorded, or repeated in the batch, was
   * not). An idempotent consumer's events are all new but for repeats within the batch.
   */
  private async claimAndHandle(consumer: string, handler: BatchHandler, events: EventEnvelope[], tx: Db): Promise<boolean[]> {
    const first = new Map<string, number>()
    events.forEach((event, i) => first.has(event.id) || first.set(event.id, i))
    let claimed: Set<string>
    if (this.unrecorded.has(consumer)) claimed = new Set(first.keys())
    else {
      const processedAt = new Date()
      const rows = [...first.keys()].map((eventId) => ({ consumer, eventId, processedAt }))
      claimed = new Set(await this.db.insertMany(this.t.processed, rows, { onConflictDoNothing: true, returning: 'eventId' }))
    }
    const fresh = events.map((event, i) => claimed.has(event.id) && first.get(event.id) === i)
    const todo = events.filter((_, i) => fresh[i])
    if (todo.length) await handler(todo, tx)
    return fresh
  }

  private async park(consumer: string, event: EventEnvelope, error: unknown) {
    const { deadLetters } = this.t
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    const failure = { error: message.slice(0, 4000), attempts: this.policy.maxAttempts, failedAt: new Date(), replayedAt: null }
    await this.db.transaction((tx) =>
      tx
        .insert(deadLetters)
        .values({
          id: Bun.randomUUIDv7(),
          consumer,
          eventId: event.id,
          type: event.type,
          source: event.source,
          payload: event.payload,
          headers: event.headers,
          occurredAt: new Date(event.occurredAt),
          ...failure,
        })
        .onConflictDoUpdate({ target: [deadLetters.consumer, deadLetters.eventId], set: failure }),
    )
    this.log.error({ consumer, eventId: event.id, type: event.type }, 'event dead-lettered')
  }

  /** Newest first; `before` is the id of the last row of the previous page. */
  async deadLetters(limit: number, before?: string) {
    const { deadLetters } = this.t
    return this.db.read
      .select()
      .from(deadLetters)
      .where(before ? lt(deadLetters.id, before) : undefined)
      .orderBy(desc(deadLetters.id))
      .limit(limit)
  }

  async deadLetter(id: string) {
    const { deadLetters } = this.t
    const [row] = await this.db.read.select().from(deadLetters).where(eq(deadLetters.id, id))
    return row
  }

  /** Delivers a dead letter again (with the full retry policy). */
  async replay(row: DeadLetter): Promise<'handled' | 'dead_lettered' | 'not_hosted'> {
    const handler = this.handlers.get(row.consumer)
    if (!handler) return 'not_hosted'
    const event: EventEnvelope = {
      id: row.eventId,
      type: row.type,
      source: row.source,
      payload: row.payload,
      headers: row.headers,
      occurredAt: row.occurredAt.toISOString(),
    }
    const handled = await this.deliver(row.consumer, handler, event)
    if (!handled) return 'dead_lettered'
    const { deadLetters } = this.t
    await this.db.transaction((tx) =>
      tx.update(deadLetters).set({ replayedAt: new Date() }).where(and(eq(deadLetters.consumer, row.consumer), eq(deadLetters.eventId, row.eventId))),
    )
    return 'handled'
  }
}
