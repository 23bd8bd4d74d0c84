/**
 * Transactional outbox and its relay. `record` writes the event in the caller's transaction (or
 * its own); after commit the relay is nudged, and it also sweeps on an interval for rows it was not
 * told about (written before a crash, or by another process). A row is claimed with a lease, handed
 * to the bus, and marked published only when the bus has accepted it.
 */
import { and, asc, inArray, isNull, lt, or } from 'drizzle-orm'
import type { Logger } from 'pino'
import type { Database, Params } from '../db'
import { materialize } from '../db/schema'
import type { EventBus, EventEnvelope } from './port'
import { eventTables } from './schema'
import { Sweeper } from '../../shared/sweeper'

/** Long enough to deliver a batch; if a relay dies holding rows, another takes them over after this. */
const LEASE_MS = 30_000
const BATCH = 500
/** Published rows deleted per transaction, so pruning never holds the writer for long. */
const PRUNE_CHUNK = 1000
/** How often pruning runs (more often when the retention is shorter). */
const PRUNE_EVERY_MS = 60_000
/** Nudges this close together are answered by one sweep: under load one claim takes many events, not one each. */
const GATHER_MS = 5

export class Outbox {
  private readonly t
  /** Claims the next batch in one statement, built once. */
  private readonly claimBatch
  private timer: ReturnType<typeof setInterval> | undefined
  private pruneTimer: ReturnType<typeof setInterval> | undefined
  private pruning: Promise<void> | undefined
  private readonly sweeper = new Sweeper(
    () => this.sweep(),
    (error) => this.log.error({ err: error }, 'outbox sweep failed'),
  )
  private readonly inFlight = new Set<Promise<void>>()
  private stopped = true
  private gathering: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly db: Database,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly intervalMs: number,
    /** How long published rows are kept (for inspection) before they are deleted. */
    private readonly retentionMs: number,
  ) {
    this.t = materialize(eventTables, db.dialect)
    const { outbox } = this.t
    this.claimBatch = db.prepare('tessera.outboxClaim', (q, p: Params<{ now: Date; leaseUntil: Date }>) => {
      const claimable = and(isNull(outbox.publishedAt), or(isNull(outbox.leaseUntil), lt(outbox.leaseUntil, p('now', outbox.leaseUntil))))
      const next = q.select({ id: outbox.id }).from(outbox).where(claimable).orderBy(asc(outbox.id)).limit(BATCH)
      // The repeated condition makes a concurrent relay's claim of the same rows a no-op.
      return q
        .update(outbox)
        .set({ leaseUntil: p('leaseUntil', outbox.leaseUntil) })
        .where(and(inArray(outbox.id, next), claimable))
        .returning()
    })
  }

  /** Writes the events to the outbox inside the current transaction, or in one of its own. */
  async record(...events: EventEnvelope[]): Promise<void> {
    if (events.length === 0) return
    await this.db.transaction(async () => {
      await this.db.insertMany(
        this.t.outbox,
        events.map((event) => ({
          id: event.id,
          type: event.type,
          source: event.source,
          payload: event.payload,
          headers: event.headers,
          occurredAt: new Date(event.occurredAt),
        })),
      )
      this.db.afterCommit(() => this.nudge())
    })
  }

  start() {
    this.stopped = false
    this.timer = setInterval(() => this.nudge(), this.intervalMs)
    this.pruneTimer = setInterval(() => {
      this.pruning ??= this.prune()
        .catch((error) => this.log.warn({ err: error }, 'outbox prune failed'))
        .finally(() => (this.pruning = undefined))
    }, Math.min(PRUNE_EVERY_MS, this.retentionMs))
    this.nudge()
  }

  /** Deletes rows published longer ago than the retention, a chunk per transaction. */
  async prune(now = Date.now()) {
    const { outbox } = this.t
    const cutoff = new Date(now - this.retentionMs)
    for (let deleted = PRUNE_CHUNK; deleted === PRUNE_CHUNK && !this.stopped; ) {
      deleted = await this.db.transaction(async (tx) => {
        const ids = await tx.select({ id: outbox.id }).from(outbox).where(lt(outbox.publishedAt, cutoff)).limit(PRUNE_CHUNK)
        if (ids.length) await tx.delete(outbox).where(inArray(outbox.id, ids.map((r) => r.id)))
        return ids.length
      })
    }
  }

  /** Stops claiming rows and waits for the events in flight to settle. */
  async stop() {
    this.stopped = true
    clearTimeout(this.gathering)
    clearInterval(this.timer)
    clearInterval(this.pruneTimer)
    await this.pruning
    await this.sweeper.stop()
    await Promise.allSettled([...this.inFlight])
  }

  /** Asks for a sweep, soon (GATHER_MS); sweeps never overlap, and a nudge during one causes another. */
  nudge() {
    if (this.stopped || this.gathering) return
    this.gathering = setTimeout(() => {
      this.gathering = undefined
      if (!this.stopped) this.sweeper.nudge()
    }, GATHER_MS)
  }

  private async sweep() {
    for (;;) {
      const rows = await this.claim()
      for (const row of rows) this.track(this.relay(row))
      if (rows.length < BATCH || this.stopped) return
    }
  }

  private track(p: Promise<void>) {
    this.inFlight.add(p)
    p.finally(() => this.inFlight.delete(p))
  }

  private async claim() {
    const now = new Date()
    const rows = await this.db.transaction((tx) => this.claimBatch(tx, { now, leaseUntil: new Date(now.getTime() + LEASE_MS) }))
    // Oldest first, as they were written.
    return rows.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  /** Ids handed over since the last write, marked published together: one write, not one per event. */
  private published: string[] = []
  private marking: Promise<void> | undefined

  private markPublished(id: string): Promise<void> {
    this.published.push(id)
    this.marking ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.published
      this.published = []
      this.marking = undefined
      const { outbox } = this.t
      await this.db.transaction((tx) => tx.update(outbox).set({ publishedAt: new Date(), leaseUntil: null }).where(inArray(outbox.id, ids)))
    })
    return this.marking
  }

  private async relay(row: typeof this.t.outbox.$inferSelect) {
    const { outbox } = this.t
    const event: EventEnvelope = {
      id: row.id,
      type: row.type,
      source: row.source,
      payload: row.payload,
      headers: row.headers,
      occurredAt: row.occurredAt.toISOString(),
    }
    try {
      await this.bus.publish(event)
      await this.markPublished(row.id)
    } catch (error) {
      this.log.warn({ err: error, eventId: row.id, type: row.type }, 'event not handed to the bus; will retry')
      await this.db
        .transaction((tx) => tx.update(outbox).set({ leaseUntil: new Date(Date.now() + this.intervalMs) }).where(inArray(outbox.id, [row.id])))
        .catch(() => {})
    }
  }
}
