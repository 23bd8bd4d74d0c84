/**
 * Transactional outbox and its relay. `record` writes the events in the caller's transaction (or
 * its own), already leased to this process for a short while (HANDOFF_LEASE_MS); after commit the
 * envelopes, still in memory, go straight to the bus, and the rows are marked published together
 * once the bus has accepted them. Events recorded together (`publishAll`) share one row, whose
 * payload is their envelopes: one row written and marked rather than one per event. A sweep on an interval claims, with a lease, the rows nobody holds:
 * written before a crash (once their short lease has run out), by another process, while the relay
 * was stopped, or refused by the bus.
 */
import { and, asc, inArray, isNull, lt, or, sql } from 'drizzle-orm'
import type { Logger } from 'pino'
import { type Database, inListed, type Params } from '../db'
import { materialize } from '../db/schema'
import type { EventBus, EventEnvelope } from './port'
import { eventTables } from './schema'
import { Sweeper } from '../../shared/sweeper'

/** Long enough to deliver a batch; if a relay dies holding rows, another takes them over after this. */
const LEASE_MS = 30_000
/**
 * The lease a row is written with, for the hand-off after its commit. Short, so that after a crash
 * a sweep (of the restarted process, or another) takes the row over within seconds; a hand-off
 * that takes longer is not published twice by this process (see `handingOff`).
 */
const HANDOFF_LEASE_MS = 3_000
const BATCH = 500
/** Marks a row that holds several events (its payload: their envelopes); the value is their number. */
const BATCH_HEADER = 'tessera-batch'
/** Events in one row at most. */
const ROW_EVENTS = 1000
/** A sweep hands events to the bus in chunks of about this many (whole rows)… */
const SWEEP_CHUNK_EVENTS = 1000
/** …and has at most this many in flight: a crash's backlog is relayed in steps, not all at once. */
const SWEEP_EVENTS_IN_FLIGHT = 4000

/** One outbox row's events, in the sequence they were recorded. */
interface RowEvents {
  rowId: string
  events: EventEnvelope[]
}
/** Published rows deleted per transaction, so pruning never holds the writer for long. */
const PRUNE_CHUNK = 1000
/** How often pruning runs (more often when the retention is shorter). */
const PRUNE_EVERY_MS = 60_000

export class Outbox {
  private readonly t
  /** Claims the next batch in one statement, built once. */
  private readonly claimBatch
  /** Marks rows published, their ids bound as one JSON array: built once, whatever the number of ids. */
  private readonly markBatch
  private timer: ReturnType<typeof setInterval> | undefined
  private pruneTimer: ReturnType<typeof setInterval> | undefined
  private pruning: Promise<void> | undefined
  private readonly sweeper = new Sweeper(
    () => this.sweep(),
    (error) => this.log.error({ err: error }, 'outbox sweep failed'),
  )
  private readonly inFlight = new Set<Promise<void>>()
  /** Ids handed to the bus by this process and not marked published yet: a sweep that claims one leaves it alone. */
  private readonly handingOff = new Set<string>()
  private stopped = true

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
    this.markBatch = db.prepare('tessera.outboxPublished', (q, p: Params<{ ids: string; now: Date }>) =>
      q
        .update(outbox)
        .set({ publishedAt: p('now', outbox.publishedAt), leaseUntil: null })
        .where(inListed(db.dialect, outbox.id, sql`${p('ids')}`)),
    )
  }

  /** Writes the events to the outbox inside the current transaction, or in one of its own. */
  async record(...events: EventEnvelope[]): Promise<void> {
    if (events.length === 0) return
    // A stopped relay hands nothing over: the rows wait, unleased, for the first sweep after start.
    const leaseUntil = this.stopped ? null : new Date(Date.now() + HANDOFF_LEASE_MS)
    const rows: (typeof this.t.outbox.$inferInsert)[] = []
    const recorded: RowEvents[] = []
    if (events.length === 1) {
      const [event] = events
      rows.push({ ...event, occurredAt: new Date(event.occurredAt), leaseUntil })
      recorded.push({ rowId: event.id, events })
    } else
      for (let i = 0; i < events.length; i += ROW_EVENTS) {
        const chunk = events.slice(i, i + ROW_EVENTS)
        const [first] = chunk
        const rowId = Bun.randomUUIDv7()
        const type = chunk.every((e) => e.type === first.type) ? first.type : 'tessera.batch'
        rows.push({ id: rowId, type, source: first.source, payload: chunk, headers: { [BATCH_HEADER]: String(chunk.length) }, occurredAt: new Date(first.occurredAt), leaseUntil })
        recorded.push({ rowId, events: chunk })
      }
    await this.db.transaction(async () => {
      await this.db.insertMany(this.t.outbox, rows)
      if (leaseUntil) this.db.afterCommit(() => this.handOff(recorded))
    })
  }

  /** After the commit: the recorded events to the bus from memory, no read of the rows. */
  private handOff(recorded: RowEvents[]) {
    // Stopped meanwhile: the rows' short lease runs out and the next sweep (here after a restart, or elsewhere) takes them.
    if (this.stopped) return
    for (const r of recorded) this.handingOff.add(r.rowId)
    this.track(
      this.relay(recorded).finally(() => {
        for (const r of recorded) this.handingOff.delete(r.rowId)
      }),
    )
  }

  start() {
    this.stopped = false
    this.timer = setInterval(() => this.sweeper.nudge(), this.intervalMs)
    this.pruneTimer = setInterval(() => {
      this.pruning ??= this.prune()
        .catch((error) => this.log.warn({ err: error }, 'outbox prune failed'))
        .finally(() => (this.pruning = undefined))
    }, Math.min(PRUNE_EVERY_MS, this.retentionMs))
    this.sweeper.nudge()
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
    clearInterval(this.timer)
    clearInterval(this.pruneTimer)
    await this.pruning
    await this.sweeper.stop()
    await Promise.allSettled([...this.inFlight])
  }

  /**
   * Claims the rows nobody holds and relays their events, at most SWEEP_EVENTS_IN_FLIGHT at a time:
   * after a crash the backlog may hold hundreds of rows of a thousand events each.
   */
  private async sweep() {
    const running: Promise<void>[] = []
    let chunk: RowEvents[] = []
    let size = 0
    const flush = async () => {
      const p = this.relay(chunk)
      this.track(p)
      running.push(p)
      chunk = []
      size = 0
      if (running.length * SWEEP_CHUNK_EVENTS >= SWEEP_EVENTS_IN_FLIGHT) await running.shift()
    }
    for (;;) {
      const rows = await this.claim()
      for (const row of rows) {
        if (this.handingOff.has(row.id)) continue
        const events: EventEnvelope[] = row.headers[BATCH_HEADER]
          ? (row.payload as EventEnvelope[])
          : [{ id: row.id, type: row.type, source: row.source, payload: row.payload, headers: row.headers, occurredAt: row.occurredAt.toISOString() }]
        chunk.push({ rowId: row.id, events })
        size += events.length
        if (size >= SWEEP_CHUNK_EVENTS) await flush()
      }
      if (chunk.length) await flush()
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

  private markPublished(ids: string[]): Promise<void> {
    this.published.push(...ids)
    this.marking ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.published
      this.published = []
      this.marking = undefined
      await this.db.transaction((tx) => this.markBatch(tx, { ids: JSON.stringify(ids), now: new Date() }))
    })
    return this.marking
  }

  /**
   * Hands the rows' events to the bus, in sequence, and marks published the rows whose events it all
   * accepted; a row with a refused event is left to a sweep after the relay interval (its other
   * events are then published again: consumers are idempotent).
   */
  private async relay(rows: RowEvents[]) {
    const outcomes = await Promise.all(rows.map((r) => Promise.allSettled(r.events.map((event) => this.bus.publish(event)))))
    const accepted: string[] = []
    const refused: string[] = []
    outcomes.forEach((settled, i) => {
      const r = rows[i]
      const failed = settled.findIndex((outcome) => outcome.status === 'rejected')
      if (failed < 0) accepted.push(r.rowId)
      else {
        refused.push(r.rowId)
        const event = r.events[failed]
        this.log.warn({ err: (settled[failed] as PromiseRejectedResult).reason, eventId: event.id, type: event.type }, 'event not handed to the bus; will retry')
      }
    })
    // Not marked (the database failed): the rows are published again once their lease runs out, as after a crash.
    if (accepted.length) await this.markPublished(accepted).catch((error) => this.log.warn({ err: error }, 'events handed to the bus not marked published'))
    if (refused.length) {
      const { outbox } = this.t
      await this.db
        .transaction((tx) => tx.update(outbox).set({ leaseUntil: new Date(Date.now() + this.intervalMs) }).where(inArray(outbox.id, refused)))
        .catch(() => {})
    }
  }
}
