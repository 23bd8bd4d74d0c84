/**
 * Sensor readings from MQTT into stock. Messages are gathered into batches (whatever arrived while
 * the batches in flight were being written, up to MAX_BATCH) and each batch is one transaction:
 * validate, de-duplicate by (deviceId, seq), apply through the ledger, keep the reading history
 * (rejected ones included), announce each changed level once. A message's promise resolves when its
 * batch has committed, and only then is it acknowledged over MQTT.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Type as t } from '@sinclair/typebox'
import { and, sql } from 'drizzle-orm'
import { type Database, type Db, inListed, type Params, type Tables } from '../../kernel/db'
import { sqlState } from '../../kernel/db/errors'
import type { MqttMessage } from '../../kernel/mqtt'
import type { PluginContext } from '../../kernel/plugin'
import type { DeviceRegistry } from './devices'
import { parseDeviceTopic } from './devices'
import { type Ledger, levelKey, type ReorderRules, type SensorGroup, type SensorReading } from './ledger'
import type { InventorySchema } from './schema'
import { partOf, Staging } from './staging'

/**
 * Saturated, a batch writes this many messages. A commit's cost grows with the pages and levels it
 * touches more than with its readings (on SQLite every changed page is written to the log once per
 * commit; each level changed is one stock.changed for the catalog to project), and 500 devices over
 * 1,000 levels touch most of them within 1,000 readings: 2,500 took SQLite from 132–154 to 99
 * server µs per reading and PostgreSQL from 126–140 to 100–117 (BENCHMARKS.md, MQTT ingestion,
 * 2026-11-24, slower-VM session). A batch holds the SQLite writer for 150–250 ms then, so SQLite
 * stays there. On PostgreSQL, 4,000 (with BUSY_QUEUE at half of it) took saturated ingestion from
 * 25.7k–26.8k to 28.2k–29.0k readings/s, and the server plus PostgreSQL from 50–51 to 46–47 µs per
 * reading (BENCHMARKS.md, MQTT ingestion, tenth session). Below saturation batches stay far smaller.
 */
const MAX_BATCH = { postgres: 4000, sqlite: 2500 } as const
/**
 * A short queue waits for more messages while they keep coming: it is looked at again every
 * GATHER_STEP_MS, and goes when nothing arrived since the last look, when it holds GATHER_BATCH,
 * or when its first message is GATHER_MS old. Every batch carries fixed costs (its transaction, one
 * stock.changed per level it touched, each relayed and projected by the catalog): below saturation
 * the queue held a few dozen messages, and batches that small kept the server about as busy at half
 * the saturated rate as at the full one, which drew out the lag (BENCHMARKS.md, MQTT ingestion,
 * 2026-11-24). A queue that stopped growing goes at once: an external broker hands over one message
 * per connection at a time (MQTT_CONSUMERS), aedes one per device, so more cannot come before these
 * are acknowledged.
 */
const GATHER_BATCH = 200
const GATHER_MS = 20
const GATHER_STEP_MS = 2
/**
 * Batches written at the same time. SQLite has a single writer. On PostgreSQL a second batch starts
 * behind a queue of BUSY_QUEUE or more, overlapping its statements with the first one's until it
 * needs the levels the first one holds. Saturated, this took 10,575 readings/s to 12–13k (with a
 * full batch as the threshold), then to 19–22k (half of it). Below that, one at a time: with
 * 400 as the threshold, a second batch also ran at half rate, and in six alternating pairs of runs
 * its lag p99 was lower in two (229 and 283 ms against 480 and 469) and higher in four (500–569
 * against 295–463), the machine being short of CPU then (BENCHMARKS.md, MQTT ingestion, fourth session).
 * Locks are taken in key order and a deadlocked batch is retried either way, as replicas of the
 * plugin write concurrently.
 */
const CONCURRENT_BATCHES = { postgres: 2, sqlite: 1 } as const
const BUSY_QUEUE = MAX_BATCH.postgres / 2
/**
 * A batch of fewer messages stages its readings and movements (staging.ts). On SQLite, written
 * straight to the indexed tables, a small batch changes about one index page per device and per
 * level it touches (1.5 pages a reading at 141 messages, 0.27 at 2,500), each written whole to the
 * log. Staged, each row is written twice, which a large batch does not gain back: staging every
 * batch took saturated SQLite from 14.1k to 10.1k readings/s. Below 1,250 only, at 6,000
 * readings/s, lag p99 went from 578 and 380 ms to 247 and 234 (BENCHMARKS.md, MQTT ingestion,
 * ninth session). PostgreSQL logs changed rows, not pages, and staging only added work there:
 * lag p99 979–1,311 ms against 330–497 at 5,000/s.
 */
const STAGE_BELOW = MAX_BATCH.sqlite / 2
/** A batch that lost a deadlock (40P01) or a serialization check (40001) is written again, up to this many times. */
const MAX_ATTEMPTS = 5
const RETRYABLE = new Set(['40P01', '40001'])
/** Larger payloads are rejected (and kept, truncated) rather than parsed. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
const MAX_READINGS_PER_MESSAGE = 500
const RAW_KEPT = 1024

const Reading = t.Object({
  seq: t.Integer({ minimum: 0 }),
  ts: t.Integer({ minimum: 0 }),
  sku: t.String({ minLength: 1, maxLength: 64 }),
  type: t.Union([t.Literal('delta'), t.Literal('count')]),
  value: t.Integer({ minimum: -1_000_000_000, maximum: 1_000_000_000 }),
})
type Reading = typeof Reading.static
const readingCheck = TypeCompiler.Compile(Reading)

type Outcome = 'applied' | 'duplicate' | 'rejected' | 'stale'
/** Why a reading kept was not applied. */
const REASONS = {
  applied: () => null,
  rejected: (sku: string) => `unknown SKU ${sku}`,
  stale: () => 'no later than the last applied count',
}
interface Candidate {
  deviceId: string
  warehouse: string
  r: Reading
}

/** What is kept of a refused message's payload, for inspection. */
const kept = (m: MqttMessage) => m.payload.subarray(0, RAW_KEPT).toString('utf8')

interface Pending {
  message: MqttMessage
  received: number
  resolve: () => void
  reject: (error: unknown) => void
}

export class Ingest {
  private queue: Pending[] = []
  /** Batches being written. */
  private readonly inFlight = new Set<Promise<void>>()
  /** A batch is due on the next turn of the event loop. */
  private scheduled = false
  private readonly concurrency: number
  private readonly maxBatch: number
  private readonly readingsTotal
  private readonly batchSize
  private readonly lag
  private readonly items
  private readonly seqRows
  private readonly stored
  /** SQLite's (see STAGE_BELOW). */
  private readonly staging?: Staging

  constructor(
    private readonly db: Database,
    private readonly t: Tables<InventorySchema>,
    private readonly ledger: Ledger,
    private readonly devices: DeviceRegistry,
    metrics: PluginContext['metrics'],
    private readonly log: PluginContext['log'],
  ) {
    this.readingsTotal = metrics.counter('readings_total', 'Sensor readings by outcome', ['outcome'])
    this.batchSize = metrics.histogram('ingest_batch_size', 'Readings messages per ingest transaction', [], [1, 5, 10, 50, 100, 250, 500, 1000, 2500])
    this.lag = metrics.histogram('ingest_lag_seconds', 'From a reading’s ts to its commit', [], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30])
    this.concurrency = CONCURRENT_BATCHES[db.dialect]
    this.maxBatch = MAX_BATCH[db.dialect]
    // The items of a batch's SKUs, bound as one JSON array: built once, whatever the number of SKUs.
    const { items, deviceSeqs, readings, readingsRecent } = t
    this.items = db.prepare('inventory.itemsIn', (q, p: Params<{ skus: string }>) =>
      q
        .select({ sku: items.sku, reorderPoint: items.reorderPoint, reorderQuantity: items.reorderQuantity })
        .from(items)
        .where(inListed(db.dialect, items.sku, sql`${p('skus')}`)),
    )
    // SQLite's de-duplication (schema.ts, deviceSeqs): each device's highest stored seq, and
    // (deviceId, seq) among these devices' and seqs' stored readings, staged or not, in one
    // statement (see newestFirst). JSON numbers compare with SQLite's integers as they are.
    this.seqRows = db.prepare('inventory.seqHighs', (q, p: Params<{ ids: string }>) =>
      q
        .select()
        .from(deviceSeqs)
        .where(inListed(db.dialect, deviceSeqs.deviceId, sql`${p('ids')}`)),
    )
    type Stored = { ids: string; seqs: string; parts: string }
    this.stored = db.prepare('inventory.storedSeqs', (q, p: Params<Stored>) =>
      q
        .select({ deviceId: readings.deviceId, seq: readings.seq })
        .from(readings)
        .where(and(inListed(db.dialect, readings.deviceId, sql`${p('ids')}`), inListed(db.dialect, readings.seq, sql`${p('seqs')}`)))
        .unionAll(
          q
            .select({ deviceId: readingsRecent.deviceId, seq: readingsRecent.seq })
            .from(readingsRecent)
            .where(
              and(
                inListed(db.dialect, readingsRecent.part, sql`${p('parts')}`),
                inListed(db.dialect, readingsRecent.deviceId, sql`${p('ids')}`),
                inListed(db.dialect, readingsRecent.seq, sql`${p('seqs')}`),
              ),
            ),
        ),
    )
    if (db.dialect === 'sqlite') this.staging = new Staging(db, t, log)
  }

  /** Starts moving staged rows (staging.ts); `stop` ends it. */
  start() {
    this.staging?.start(() => this.inFlight.size > 0)
  }

  /** SQLite: the highest seq stored of each device. */
  private async seqHighs(tx: Db, deviceIds: string[]) {
    if (deviceIds.length === 0) return new Map<string, number | null>()
    const rows = await this.seqRows(tx, { ids: JSON.stringify(deviceIds) })
    return new Map(rows.map((r) => [r.deviceId, r.seqHigh]))
  }

  /**
   * SQLite: the candidates not stored before. Above its device's highest seq a reading is new; at or
   * below it (a re-send, or a reading that arrived after a later one) it is looked up, in one
   * statement for the whole batch.
   */
  private async unseen(tx: Db, candidates: Candidate[], highs: Map<string, number | null>) {
    const below = candidates.filter((c) => c.r.seq <= (highs.get(c.deviceId) ?? -1))
    if (below.length === 0) return candidates
    const ids = [...new Set(below.map((c) => c.deviceId))]
    const found = await this.stored(tx, {
      ids: JSON.stringify(ids),
      seqs: JSON.stringify([...new Set(below.map((c) => c.r.seq))]),
      parts: JSON.stringify([...new Set(ids.map(partOf))]),
    })
    const seen = new Set(found.map((r) => `${r.deviceId}:${r.seq}`))
    return candidates.filter((c) => !seen.has(`${c.deviceId}:${c.r.seq}`))
  }

  /** PostgreSQL: inserts the readings as applied; the unique (deviceId, seq) index skips the ones stored before. Returns those inserted. */
  private async insertNew(candidates: Candidate[], receivedAt: Date, ids: Map<Candidate, string>) {
    const rows = candidates.map((c) => {
      const id = Bun.randomUUIDv7()
      ids.set(c, id)
      const { seq, ts, sku, type, value } = c.r
      return { id, deviceId: c.deviceId, seq, ts, sku, type, value, status: 'applied', receivedAt }
    })
    // 'rare': duplicates are re-sends. Sent after the batch's reads, not beside them: a plain insert
    // refused on a duplicate is gone over again, and a statement sent behind it meanwhile would fail with it.
    const inserted = new Set(await this.db.insertMany(this.t.readings, rows, { onConflictDoNothing: 'rare', returning: 'id' }))
    return candidates.filter((c) => inserted.has(ids.get(c)!))
  }

  /** Readings stored as applied that were not (PostgreSQL): `status`, with its reason. */
  private async markOutcome(tx: Db, status: 'rejected' | 'stale', ids: string[]) {
    const { readings } = this.t
    const reason = status === 'rejected' ? sql`'unknown SKU ' || ${readings.sku}` : REASONS.stale()
    await tx
      .update(readings)
      .set({ status, reason })
      .where(inListed(this.db.dialect, readings.id, sql`${JSON.stringify(ids)}`))
  }

  /** SQLite: each device's highest seq, where this batch stored a higher one. */
  private async raiseSeqHighs(stored: Candidate[], highs: Map<string, number | null>) {
    const top = new Map<string, number>()
    for (const c of stored) if (c.r.seq > (top.get(c.deviceId) ?? highs.get(c.deviceId) ?? -1)) top.set(c.deviceId, c.r.seq)
    if (top.size === 0) return
    const rows = [...top].sort(([a], [b]) => (a < b ? -1 : 1)).map(([deviceId, seqHigh]) => ({ deviceId, seqHigh }))
    await this.db.insertMany(this.t.deviceSeqs, rows, { onConflictDoUpdate: { target: ['deviceId'], set: { seqHigh: sql`excluded.seq_high` } } })
  }

  /** The MQTT handler for readings: resolves once the message's batch has committed. */
  readonly handle = (message: MqttMessage) =>
    new Promise<void>((resolve, reject) => {
      this.queue.push({ message, received: Date.now(), resolve, reject })
      this.schedule()
    })

  /** Batches that may be in flight now: more than one only behind a long queue (CONCURRENT_BATCHES). */
  private writers() {
    return this.queue.length >= BUSY_QUEUE ? this.concurrency : 1
  }

  /**
   * Starts a batch when a writer is free: on the next turn of the event loop, so that what arrived
   * in the same turn (aedes parses a whole socket read at once) joins it, and between batches
   * acknowledgements go out and HTTP is answered (on SQLite a batch never waits for I/O); a short
   * queue that is still growing waits for more (GATHER_*).
   */
  private schedule() {
    if (this.scheduled || this.inFlight.size >= this.writers() || this.queue.length === 0) return
    this.scheduled = true
    let seen = 0
    const start = () => {
      if (this.inFlight.size >= this.writers() || this.queue.length === 0) return void (this.scheduled = false)
      const length = this.queue.length
      if (length > seen && length < GATHER_BATCH && Date.now() - this.queue[0]!.received < GATHER_MS) {
        seen = length
        return void setTimeout(start, GATHER_STEP_MS)
      }
      this.scheduled = false
      const batch = this.queue.splice(0, this.maxBatch)
      const written = this.write(batch).finally(() => {
        this.inFlight.delete(written)
        this.schedule()
      })
      this.inFlight.add(written)
      this.schedule()
    }
    setImmediate(start)
  }

  /** One batch: committed, then acknowledged; or left unacknowledged if it cannot be stored. */
  private async write(batch: Pending[]) {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.apply(batch.map((p) => p.message))
        for (const p of batch) p.resolve()
        this.batchSize.observe(batch.length)
        return
      } catch (error) {
        const state = sqlState(error)
        if (state && RETRYABLE.has(state) && attempt < MAX_ATTEMPTS) {
          this.log.warn({ sqlState: state, attempt, messages: batch.length }, 'ingest batch rolled back by a concurrent one; written again')
          continue
        }
        this.log.error({ err: error, messages: batch.length }, 'ingest batch failed; readings stay unacknowledged')
        for (const p of batch) p.reject(error)
        return
      }
    }
  }

  /** Waits for the batches in flight and the ones queued behind them. */
  async stop() {
    await this.staging?.stop()
    while (this.inFlight.size || this.scheduled) {
      if (this.inFlight.size) await Promise.allSettled([...this.inFlight])
      else await new Promise((r) => setImmediate(r))
    }
  }

  private async apply(messages: MqttMessage[]) {
    const counts: Record<Outcome, number> = { applied: 0, duplicate: 0, rejected: 0, stale: 0 }
    const lags: number[] = []
    // Where a batch's time goes, logged at debug level (LOG_LEVEL=debug): ms per step.
    const steps: Record<string, number> = {}
    let last = performance.now()
    const mark = (step: string) => {
      const now = performance.now()
      steps[step] = Math.round((now - last) * 10) / 10
      last = now
    }
    await this.db.transaction(async (tx) => {
      mark('wait')
      const { readings, readingsRecent } = this.t
      const receivedAt = new Date()
      const refused: (typeof readings.$inferInsert)[] = []
      const candidates: Candidate[] = []
      const heard = new Set<string>()
      for (const m of messages) {
        const p = this.parse(m)
        if (!p.deviceId) continue
        // Known devices (all but a first message after a restart) without a turn of the event loop each.
        const binding = this.devices.knownBinding(p.deviceId) ?? (await this.devices.binding(p.deviceId))
        if (!binding || binding.warehouse !== p.warehouse) p.error = 'unknown device or warehouse'
        else heard.add(p.deviceId)
        if (p.error) refused.push({ id: Bun.randomUUIDv7(), deviceId: p.deviceId, status: 'rejected', reason: p.error, raw: kept(m), receivedAt })
        else for (const r of p.readings!) candidates.push({ deviceId: p.deviceId, warehouse: p.warehouse, r })
      }
      counts.rejected += refused.length
      mark('parse')

      // The first of several copies of (deviceId, seq) in this batch is the one that counts. In key
      // order, as every lock a batch takes, so that concurrent batches (replicas) do not deadlock.
      const firsts = new Map<string, Candidate>()
      for (const c of candidates) if (!firsts.has(`${c.deviceId}:${c.r.seq}`)) firsts.set(`${c.deviceId}:${c.r.seq}`, c)
      const byKey = [...firsts.values()].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.r.seq - b.r.seq))
      // The reads go out together: on PostgreSQL each separate wait for a result is a turn of an
      // event loop that is busy with the next batch's messages.
      const [known, before, highs] = await Promise.all([
        this.knownSkus(tx, [...new Set(candidates.map((c) => c.r.sku))]),
        this.ledger.readLevels(tx, candidates.map((c) => ({ sku: c.r.sku, warehouse: c.warehouse }))),
        this.staging ? this.seqHighs(tx, [...new Set(candidates.map((c) => c.deviceId))]) : undefined,
      ])
      // Which readings were not stored before: on SQLite by each device's highest seq, on PostgreSQL
      // by the unique index, as they are inserted (ids: the rows inserted).
      const ids = new Map<Candidate, string>()
      const fresh = highs ? await this.unseen(tx, byKey, highs) : await this.insertNew(byKey, receivedAt, ids)
      counts.duplicate += candidates.length - fresh.length
      mark('dedup')
      await this.breathe()
      mark('turn1')

      // Grouped in arrival order (byKey is in seq order).
      const isFresh = new Set(fresh)
      const groups = new Map<string, SensorGroup>()
      const readingOf = new Map<SensorReading, Candidate>()
      for (const c of firsts.values()) {
        if (!isFresh.has(c) || !known.has(c.r.sku)) continue
        const key = levelKey(c.r.sku, c.warehouse)
        const group = groups.get(key) ?? { sku: c.r.sku, warehouse: c.warehouse, readings: [] }
        groups.set(key, group)
        const reading: SensorReading = { ts: c.r.ts, type: c.r.type, value: c.r.value, reason: `sensor ${c.r.type}`, source: `sensor:${c.deviceId}` }
        group.readings.push(reading)
        readingOf.set(reading, c)
      }
      mark('group')
      // Levels in key order: the ledger locks them in the order given.
      const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g)
      // A small batch on SQLite stages its readings and movements; a large one changes most index
      // pages it would change anyway, and writes them once, straight to the indexed tables (STAGE_BELOW).
      const staged = this.staging !== undefined && messages.length < STAGE_BELOW
      const { levels, stale, alerted } = await this.ledger.applySensorReadings(tx, ordered, before, staged)
      mark('apply')
      await this.breathe()
      mark('turn2')
      const staleOnes = new Set([...stale].map((r) => readingOf.get(r)!))
      for (const [r, c] of readingOf) if (!stale.has(r)) lags.push(Date.now() - c.r.ts)
      const outcome = (c: Candidate): 'applied' | 'stale' | 'rejected' => (!known.has(c.r.sku) ? 'rejected' : staleOnes.has(c) ? 'stale' : 'applied')
      for (const c of fresh) counts[outcome(c)]++
      if (highs) {
        // Every reading kept, with what became of it.
        const rows = fresh.map((c) => {
          const status = outcome(c)
          const { seq, ts, sku, type, value } = c.r
          const part = staged ? partOf(c.deviceId) : (undefined as unknown as number)
          return { part, id: Bun.randomUUIDv7(), deviceId: c.deviceId, seq, ts, sku, type, value, status, reason: REASONS[status](sku), receivedAt }
        })
        await Promise.all([this.db.insertMany(staged ? readingsRecent : readings, rows), this.db.insertMany(readings, refused), this.raiseSeqHighs(fresh, highs)])
      } else {
        await this.db.insertMany(readings, refused)
        // Stored as applied: the few that were not, marked so (one statement each, when there are any).
        for (const status of ['rejected', 'stale'] as const) {
          const these = fresh.filter((c) => outcome(c) === status).map((c) => ids.get(c)!)
          if (these.length) await this.markOutcome(tx, status, these)
        }
      }
      mark('readings')
      // Late in the batch: a second batch in flight (PostgreSQL) touches the same devices, and would
      // wait here for this one's commit rather than write its readings meanwhile.
      await this.devices.seen(tx, [...heard], receivedAt)
      mark('seen')
      await this.ledger.announce(tx, levels, { items: known, alerted })
      mark('announce')
      if (this.staging) {
        await this.staging.moveDue(tx)
        mark('move')
        if (staged) this.db.afterCommit(() => this.staging!.staged())
      }
    })
    mark('commit')
    this.log.debug({ messages: messages.length, ms: steps }, 'ingest batch')
    for (const [outcome, n] of Object.entries(counts)) if (n) this.readingsTotal.inc({ outcome }, n)
    for (const ms of lags) this.lag.observe(Math.max(0, ms) / 1000)
  }

  /**
   * Lets the event loop turn inside a batch's transaction, on SQLite, whose statements never wait
   * for I/O: a batch of a thousand readings holds the loop for 50–200 ms, and HTTP requests (a
   * GET /stock), PUBACKs of the batch before and newly arrived readings waited for all of it. Reads
   * go to the other connection and see the last commit; other writers wait for this transaction
   * either way. At 8,000 readings/s, two turns per batch took GET /stock from p99 124–191 ms to
   * 39–91 ms (three alternating pairs; BENCHMARKS.md, MQTT ingestion, sixth session). On PostgreSQL
   * every statement already waits for the server.
   */
  private breathe(): Promise<void> | void {
    if (this.db.dialect === 'sqlite') return new Promise((resolve) => setImmediate(resolve))
  }

  /** Topic and payload → device, warehouse, readings; or the reason they are refused. */
  private parse(m: MqttMessage): { deviceId?: string; warehouse: string; readings?: Reading[]; error?: string } {
    const topic = parseDeviceTopic(m.topic)
    if (!topic) return { warehouse: '', error: 'not a readings topic' }
    const base = { deviceId: topic.deviceId, warehouse: topic.warehouse }
    if (m.payload.byteLength > MAX_PAYLOAD_BYTES) return { ...base, error: `payload over ${MAX_PAYLOAD_BYTES} bytes` }
    let body: unknown
    try {
      body = JSON.parse(m.payload.toString('utf8'))
    } catch {
      return { ...base, error: 'malformed JSON' }
    }
    const list = Array.isArray(body) ? body : [body]
    if (list.length === 0 || list.length > MAX_READINGS_PER_MESSAGE)
      return { ...base, error: `a message carries 1 to ${MAX_READINGS_PER_MESSAGE} readings` }
    for (const r of list)
      if (!readingCheck.Check(r)) {
        const first = [...readingCheck.Errors(r)][0]
        return { ...base, error: `invalid reading${first ? ` at ${first.path || '/'}: ${first.message}` : ''}` }
      }
    return { ...base, readings: list as Reading[] }
  }

  private async knownSkus(tx: Db, skus: string[]) {
    if (skus.length === 0) return new Map() as ReorderRules
    const rows = await this.items(tx, { skus: JSON.stringify(skus) })
    return new Map(rows.map((r) => [r.sku, r]))
  }
}
