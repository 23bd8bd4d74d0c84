/**
 * The Redis Streams bus: events cross processes, and the replicas of a plugin share its work.
 *
 * Layout: one stream per event type, `<REDIS_PREFIX>events:<type>`, and on it one consumer group per
 * subscribing consumer (the kernel names them `<plugin>:<type>`). A consumer group lives on one
 * stream and a plugin subscribes to a few types, so a stream per type lets each group read exactly
 * the events it wants; a stream per publishing plugin would make every subscriber read and skip all
 * of that plugin's other events, and hold them un-trimmable until it had. Every group sees every
 * entry; within a group, each entry goes to one replica (its consumer, EVENT_CONSUMER_NAME).
 *
 * Guarantees, the same as the in-process bus but across processes:
 * - `publish` resolves once XADD is acknowledged; the outbox marks its row published only then.
 * - An entry is acknowledged (XACK) only after the kernel's `deliver` has settled it (handled, a
 *   duplicate, or dead-lettered in the database: delivery.ts retries the handler itself).
 * - A replica renews the idle time of the entries it holds; the entries of a replica that died go
 *   idle and any live replica claims them (XAUTOCLAIM) after EVENT_CLAIM_IDLE_MS.
 * - A `deliver` that rejects (the kernel could not even record the outcome, e.g. the database is
 *   down) leaves the entry un-acknowledged; it is delivered again with backoff that continues the
 *   kernel's retry sequence. After EVENT_MAX_ATTEMPTS deliveries, counted by Redis's delivery
 *   counter so that those of replicas that died count too, it moves to the dead-letter stream
 *   `<REDIS_PREFIX>events-dead-letters` (with the group, the count and the last error).
 * - Trimming, every EVENT_STREAM_TRIM_INTERVAL_MS: entries that every group has acknowledged go
 *   (XTRIM MINID, below the oldest pending or unread entry of any group); and no stream keeps more
 *   than EVENT_STREAM_MAXLEN entries (XTRIM MAXLEN), which is the only way an entry a group has not
 *   acknowledged is lost, and is logged as such. A stream without groups keeps up to the bound.
 * - A group created for the first time reads from the oldest entry still kept, so a subscriber that
 *   starts after a publisher (a fresh deployment, started in any sequence) misses nothing still in Redis.
 *
 * Each subscription reads with XREADGROUP BLOCK on a connection of its own (a blocked read holds
 * its connection); publishing, acknowledging, claiming and trimming share one more.
 */
import { hostname } from 'node:os'
import Redis, { type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import type { Deliver, EventBus, EventEnvelope } from './port'

export interface RedisStreamsOptions {
  url: string
  prefix: string
  /** This replica's name in its consumer groups; unique among live replicas. */
  consumerName?: string
  claimIdleMs: number
  trimIntervalMs: number
  maxLen: number
  /** The kernel's retry policy, which the bus continues for deliveries that reject. */
  maxAttempts: number
  retryBaseMs: number
  log: Logger
}

type Entry = [id: string, fields: string[] | null]

interface Subscription {
  group: string
  key: string
  deliver: Deliver
  reader?: Redis
  readerId?: number
  reading?: Promise<void>
  /** Entries this replica is delivering or will deliver again; their idle time is renewed. */
  held: Set<string>
  retries: Map<string, ReturnType<typeof setTimeout>>
}

const READ_COUNT = 32
const BLOCK_MS = 5_000
const CLAIM_COUNT = 100

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

export function redisStreamsBus(options: RedisStreamsOptions): EventBus {
  return new RedisStreamsBus(options)
}

class RedisStreamsBus implements EventBus {
  private readonly subscriptions: Subscription[] = []
  /** Streams this process writes or reads, and so trims. */
  private readonly streams = new Set<string>()
  private readonly deadLetters: string
  private readonly name: string
  private redis: Redis | undefined
  private running = false
  private readonly inFlight = new Set<Promise<unknown>>()
  private timers: ReturnType<typeof setInterval>[] = []
  private claiming: Promise<void> | undefined
  private trimming: Promise<void> | undefined

  constructor(private readonly o: RedisStreamsOptions) {
    this.name = o.consumerName || `${hostname()}-${process.pid}`
    this.deadLetters = `${o.prefix}events-dead-letters`
    this.streams.add(this.deadLetters)
  }

  private key(type: string) {
    return `${this.o.prefix}events:${type}`
  }

  async publish(event: EventEnvelope) {
    if (!this.running || !this.redis) throw new Error('the event bus is not running')
    const key = this.key(event.type)
    this.streams.add(key)
    await this.redis.call('XADD', key, '*', ...encode(event))
  }

  subscribe(consumer: string, type: string, deliver: Deliver) {
    if (this.running) throw new Error(`${consumer} subscribes to ${type} after the bus started; subscribe during setup`)
    if (this.subscriptions.some((s) => s.group === consumer && s.key === this.key(type))) throw new Error(`${consumer} already subscribes to ${type}`)
    this.subscriptions.push({ group: consumer, key: this.key(type), deliver, held: new Set(), retries: new Map() })
    this.streams.add(this.key(type))
  }

  async start() {
    this.redis = this.connect({ maxRetriesPerRequest: 2, enableAutoPipelining: true })
    for (const sub of this.subscriptions) await this.ensureGroup(sub)
    for (const sub of this.subscriptions) {
      // Blocked reads wait out a Redis outage instead of failing in a loop.
      const reader = (sub.reader = this.connect({ maxRetriesPerRequest: null }))
      reader.on('ready', () => void reader.client('ID').then((id) => (sub.readerId = id), () => {}))
    }
    this.running = true
    for (const sub of this.subscriptions) sub.reading = this.read(sub)
    const every = (ms: number, job: () => void) => this.timers.push(setInterval(job, ms))
    every(Math.max(10, Math.floor(this.o.claimIdleMs / 3)), () => (this.claiming ??= this.claimAll().finally(() => (this.claiming = undefined))))
    every(this.o.trimIntervalMs, () => (this.trimming ??= this.trimAll().finally(() => (this.trimming = undefined))))
  }

  /** Stops reading, lets deliveries in flight settle and acknowledges them, then disconnects. */
  async stop() {
    this.running = false
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    // Entries waiting for another delivery stay pending; a live replica claims them.
    for (const sub of this.subscriptions) for (const timer of sub.retries.values()) clearTimeout(timer)
    const reading = Promise.all(this.subscriptions.map((s) => s.reading))
    await Promise.all(this.subscriptions.map((s) => s.readerId !== undefined && this.redis?.client('UNBLOCK', s.readerId).catch(() => {})))
    // A read sent just as we unblocked would block for BLOCK_MS; closing its connection ends it.
    if (!(await Promise.race([reading.then(() => true), sleep(1_000).then(() => false)]))) for (const s of this.subscriptions) s.reader?.disconnect()
    await reading
    await Promise.allSettled([this.claiming, this.trimming, ...this.inFlight])
    for (const sub of this.subscriptions) {
      sub.reader?.disconnect()
      sub.reader = sub.readerId = undefined
    }
    await this.redis?.quit().catch(() => this.redis?.disconnect())
    this.redis = undefined
  }

  private connect(extra: RedisOptions) {
    // RESP2 keeps the documented reply shapes of the stream commands (RESP3 turns XREADGROUP's into a map).
    const redis = new Redis(this.o.url, { protocol: 2, enableOfflineQueue: true, ...extra })
    let lastError = ''
    redis.on('error', (error: Error) => {
      if (error.message !== lastError) this.o.log.warn({ err: error }, `event bus redis: ${(lastError = error.message)}`)
    })
    redis.on('ready', () => (lastError = ''))
    return redis
  }

  private async ensureGroup(sub: Subscription) {
    await this.redis!.xgroup('CREATE', sub.key, sub.group, '0', 'MKSTREAM').catch((error) => {
      if (!message(error).includes('BUSYGROUP')) throw error
    })
  }

  private async read(sub: Subscription) {
    while (this.running) {
      let reply: [string, Entry[]][] | null
      try {
        reply = (await sub.reader!.call('XREADGROUP', 'GROUP', sub.group, this.name, 'COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', sub.key, '>')) as typeof reply
      } catch (error) {
        if (!this.running) return
        // The stream or group was deleted under us (by an operator): make them again.
        if (message(error).includes('NOGROUP')) await this.ensureGroup(sub).catch(() => {})
        else this.o.log.warn({ err: error, group: sub.group }, 'event bus: read failed')
        await sleep(500)
        continue
      }
      const entries = reply?.[0]?.[1] ?? []
      if (entries.length) await this.settleAll(sub, entries.map((entry) => [entry, 1]))
    }
  }

  /** Delivers entries this replica now holds, with their delivery counts; acknowledges the settled ones together. */
  private settleAll(sub: Subscription, batch: [Entry, number][]): Promise<void> {
    for (const [[id]] of batch) sub.held.add(id)
    const work = (async () => {
      const outcomes = await Promise.all(batch.map(([entry, deliveries]) => this.settle(sub, entry, deliveries)))
      const settled = batch.filter((_, i) => outcomes[i] === 'settled').map(([[id]]) => id)
      if (settled.length) await this.redis!.xack(sub.key, sub.group, ...settled).catch((e) => this.o.log.warn({ err: e }, 'event bus: XACK failed; the entries will be delivered again'))
      for (const [i, [[id]]] of batch.entries()) if (outcomes[i] !== 'retrying') sub.held.delete(id)
    })()
    return this.track(work)
  }

  private async settle(sub: Subscription, [id, fields]: Entry, deliveries: number): Promise<'settled' | 'retrying' | 'released'> {
    if (!fields) return 'settled' // deleted while pending: nothing left to deliver
    let event: EventEnvelope
    try {
      event = decode(fields)
    } catch (error) {
      return this.park(sub, id, fields, deliveries, `malformed entry: ${message(error)}`)
    }
    if (deliveries > this.o.maxAttempts) return this.park(sub, id, fields, deliveries - 1, 'delivered without ever being settled (the replicas holding it died)')
    try {
      await sub.deliver(event)
      return 'settled'
    } catch (error) {
      this.o.log.warn({ err: error, group: sub.group, eventId: event.id, deliveries }, 'event bus: delivery not settled')
      if (deliveries >= this.o.maxAttempts) return this.park(sub, id, fields, deliveries, message(error))
      this.retryLater(sub, id, deliveries)
      return 'retrying'
    }
  }

  /** The next delivery continues the kernel's backoff (base × 2^attempt), at most one claim time away. */
  private retryLater(sub: Subscription, id: string, deliveries: number) {
    const { retryBaseMs, maxAttempts, claimIdleMs } = this.o
    const delay = Math.min(retryBaseMs * 2 ** (maxAttempts - 2 + deliveries), claimIdleMs) * (0.75 + Math.random() * 0.5)
    const redeliver = async () => {
      // XCLAIM counts the delivery in Redis; nothing comes back if the entry was trimmed meanwhile.
      const claimed = (await this.redis!.call('XCLAIM', sub.key, sub.group, this.name, 0, id).catch(() => undefined)) as Entry[] | undefined
      if (claimed?.[0]) await this.settleAll(sub, [[claimed[0], deliveries + 1]])
      else sub.held.delete(id)
    }
    sub.retries.set(
      id,
      setTimeout(() => {
        sub.retries.delete(id)
        if (this.running) this.track(redeliver())
      }, delay),
    )
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work)
    return work.finally(() => this.inFlight.delete(work))
  }

  /** Moves an entry the kernel could not settle to the dead-letter stream, then acknowledges it. */
  private async park(sub: Subscription, id: string, fields: string[], deliveries: number, error: string): Promise<'released'> {
    try {
      await this.redis!.call('XADD', this.deadLetters, '*', 'stream', sub.key, 'group', sub.group, 'entry', id, 'deliveries', String(deliveries), 'error', error.slice(0, 4000), ...fields)
      await this.redis!.xack(sub.key, sub.group, id)
      this.o.log.error({ group: sub.group, entry: id, deliveries }, 'event bus: entry moved to the dead-letter stream')
    } catch (e) {
      // Left pending: a later claim finds it over the limit and parks it then.
      this.o.log.warn({ err: e, group: sub.group, entry: id }, 'event bus: could not dead-letter an entry')
    }
    return 'released'
  }

  /** Renews what this replica holds, then claims what died with other replicas. */
  private async claimAll() {
    for (const sub of this.subscriptions) {
      if (!this.running) return
      try {
        if (sub.held.size) await this.redis!.call('XCLAIM', sub.key, sub.group, this.name, 0, ...sub.held, 'JUSTID')
        await this.claim(sub)
      } catch (error) {
        this.o.log.warn({ err: error, group: sub.group }, 'event bus: claiming failed')
      }
    }
  }

  private async claim(sub: Subscription) {
    let start = '0-0'
    do {
      const [next, entries] = (await this.redis!.call('XAUTOCLAIM', sub.key, sub.group, this.name, this.o.claimIdleMs, start, 'COUNT', CLAIM_COUNT)) as [string, (Entry | null)[]]
      start = next
      const claimed = entries.filter((e): e is Entry => !!e && !sub.held.has(e[0]))
      if (!claimed.length) continue
      // XPENDING tells how often each was delivered, this claim included.
      const pending = (await this.redis!.call('XPENDING', sub.key, sub.group, claimed[0][0], claimed.at(-1)![0], CLAIM_COUNT + sub.held.size, this.name)) as [string, string, number, number][]
      const counts = new Map(pending.map(([id, , , count]) => [id, count]))
      this.o.log.info({ group: sub.group, entries: claimed.length }, 'event bus: claimed entries of a replica that stopped')
      void this.settleAll(sub, claimed.map((entry) => [entry, counts.get(entry[0]) ?? 1]))
    } while (start !== '0-0' && this.running)
  }

  private async trimAll() {
    for (const key of this.streams) {
      if (!this.running) return
      await this.trim(key).catch((error) => this.o.log.warn({ err: error, stream: key }, 'event bus: trimming failed'))
    }
  }

  private async trim(key: string) {
    const redis = this.redis!
    const groups = ((await redis.call('XINFO', 'GROUPS', key).catch(() => [])) as unknown[][]).map(record)
    let floor: StreamId | undefined
    for (const g of groups) {
      // Below the oldest entry it holds un-acknowledged, or past the last one it was given.
      const [count, oldest] = Number(g.pending) > 0 ? ((await redis.call('XPENDING', key, String(g.name))) as [number, string | null]) : [0, null]
      const own = count > 0 && oldest ? parseId(oldest) : successor(parseId(String(g['last-delivered-id'])))
      if (!floor || compare(own, floor) < 0) floor = own
      await this.forgetIdleConsumers(key, String(g.name))
    }
    if (floor) await redis.call('XTRIM', key, 'MINID', `${floor[0]}-${floor[1]}`)
    const dropped = Number(await redis.call('XTRIM', key, 'MAXLEN', this.o.maxLen))
    if (dropped > 0 && groups.length) this.o.log.warn({ stream: key, dropped, maxLen: this.o.maxLen }, 'event bus: a group fell behind by more than EVENT_STREAM_MAXLEN; the oldest entries were dropped')
  }

  /** Consumers with nothing pending that have not read for long (replicas gone) are removed from the group. */
  private async forgetIdleConsumers(key: string, group: string) {
    const consumers = ((await this.redis!.call('XINFO', 'CONSUMERS', key, group)) as unknown[][]).map(record)
    for (const c of consumers)
      if (Number(c.pending) === 0 && Number(c.idle) > 10 * this.o.claimIdleMs && c.name !== this.name) await this.redis!.call('XGROUP', 'DELCONSUMER', key, group, String(c.name))
  }
}

type StreamId = [bigint, bigint]
const parseId = (id: string): StreamId => {
  const [ms, seq = '0'] = id.split('-')
  return [BigInt(ms), BigInt(seq)]
}
const successor = ([ms, seq]: StreamId): StreamId => [ms, seq + 1n]
const compare = (a: StreamId, b: StreamId) => (a[0] === b[0] ? Number(a[1] - b[1]) : Number(a[0] - b[0]))
/** XINFO answers flat [name, value, name, value, …] lists. */
const record = (flat: unknown[]): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1]
  return out
}

function encode(e: EventEnvelope): string[] {
  return ['id', e.id, 'type', e.type, 'source', e.source, 'occurredAt', e.occurredAt, 'headers', JSON.stringify(e.headers), 'payload', JSON.stringify(e.payload ?? null)]
}

function decode(fields: string[]): EventEnvelope {
  const f = record(fields) as Record<string, string | undefined>
  if (!f.id || !f.type || !f.source || !f.occurredAt) throw new Error('id, type, source and occurredAt are required')
  return { id: f.id, type: f.type, source: f.source, occurredAt: f.occurredAt, headers: JSON.parse(f.headers ?? '{}'), payload: JSON.parse(f.payload ?? 'null') }
}
