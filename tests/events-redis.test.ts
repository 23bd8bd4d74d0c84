/**
 * What only the Redis Streams bus promises, beyond the bus contract (events.test.ts): replicas of a
 * plugin share its events, a replica that dies loses none of the events it held, every subscribing
 * plugin gets every event, streams are trimmed, and events the kernel cannot settle end in the
 * dead-letter stream. Real server processes share one database and one REDIS_PREFIX, as replicas
 * do. Needs Redis (TEST_REDIS_URL): skipped on the embedded run.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { hostname } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'
import postgres from 'postgres'
import { baseEnv, type ChildServer, client, eventually, isolatedStore, ROOT, services, spawnServer, startServer, variant } from './harness'

const TYPE = 'ledger.entry.recorded'
const LEDGER = `ledger:${TYPE}`
const TALLY = `tally:${TYPE}`
/** Server processes start, claims wait out EVENT_CLAIM_IDLE_MS: more than bun's default 5 s per test. */
const SLOW = 30_000
const WAIT = 15_000

const handled = async (url: string, consumer: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('events_handled_total{') && l.includes(`consumer="${consumer}"`) && l.includes('outcome="handled"'))
  return line ? Number(line.split(' ').pop()) : 0
}

const effects = async (url: string) => (await client(url).get('/api/v1/ledger/effects')).body as { entryId: string; eventId: string }[]

async function record(urls: string[], count: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const r = await client(urls[i % urls.length]).post('/api/v1/ledger/entries', { note: `entry ${i}` })
    expect(r.status).toBe(201)
    ids.push(r.body.id)
  }
  return ids
}

describe.skipIf(!services.redisUrl)(`Redis Streams bus across processes (${variant})`, () => {
  const redis = services.redisUrl ? new Redis(services.redisUrl) : (undefined as never)
  const children: ChildServer[] = []
  const cleanups: (() => Promise<void>)[] = []

  /** One store (database schema + REDIS_PREFIX) that every server of a test shares. */
  function sharedStore(overrides: Record<string, string> = {}) {
    const store = isolatedStore()
    cleanups.push(() => store.cleanup())
    const env = baseEnv({ ...store.env, EVENT_BUS: 'redis-streams', EVENT_CLAIM_IDLE_MS: '1000', ...overrides })
    return { env, stream: `${store.env.REDIS_PREFIX}events:${TYPE}`, prefix: store.env.REDIS_PREFIX }
  }
  async function spawn(env: Record<string, string>) {
    const child = await spawnServer(env)
    children.push(child)
    return child
  }

  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.proc.kill('SIGTERM')
      await child.proc.exited
    }
    for (const cleanup of cleanups.splice(0)) await cleanup()
  })
  afterAll(() => redis?.quit())

  test('two replicas of a plugin share its events, and each event is handled once in total', async () => {
    const { env } = sharedStore({ PLUGINS: 'ledger' })
    const a = await spawn(env)
    const b = await spawn(env)
    const ids = await record([a.url, b.url], 40)

    expect(await eventually(async () => (await effects(a.url)).length >= 40, WAIT)).toBe(true)
    await Bun.sleep(300)
    const done = await effects(a.url)
    expect(done.map((e) => e.entryId).sort()).toEqual([...ids].sort())
    const [byA, byB] = [await handled(a.url, LEDGER), await handled(b.url, LEDGER)]
    expect(byA + byB).toBe(40)
    expect(byA).toBeGreaterThan(0)
    expect(byB).toBeGreaterThan(0)
  }, SLOW)

  test('events held by a replica killed with SIGKILL are claimed by the other and handled once', async () => {
    const { env, stream } = sharedStore({ PLUGINS: 'ledger' })
    const doomed = await spawn(env)
    const survivor = await spawn(env)
    // The doomed replica takes its time with every event, so it is holding some when it dies.
    expect((await client(doomed.url).post('/api/v1/ledger/handler-delay', { ms: 30_000 })).status).toBe(200)
    const ids = await record([survivor.url], 20)

    const doomedName = `${hostname()}-${doomed.proc.pid}`
    const held = async () => {
      const [, , , consumers] = (await redis.xpending(stream, LEDGER)) as [number, string, string, [string, string][] | null]
      return Number(consumers?.find(([name]) => name === doomedName)?.[1] ?? 0)
    }
    expect(await eventually(async () => (await held()) > 0, WAIT)).toBe(true)
    doomed.proc.kill('SIGKILL')
    await doomed.proc.exited

    expect(await eventually(async () => (await effects(survivor.url)).length >= 20, WAIT)).toBe(true)
    await Bun.sleep(300)
    expect((await effects(survivor.url)).map((e) => e.entryId).sort()).toEqual([...ids].sort())
    expect(await handled(survivor.url, LEDGER)).toBe(20)
    expect(await eventually(async () => (await held()) === 0, WAIT)).toBe(true)
    expect(((await redis.xpending(stream, LEDGER)) as [number])[0]).toBe(0)
  }, SLOW)

  test('a replica that is slow but alive keeps its events: nobody claims them from it', async () => {
    const { env } = sharedStore({ PLUGINS: 'ledger' })
    const slow = await spawn(env)
    const other = await spawn(env)
    // Three claim times (EVENT_CLAIM_IDLE_MS=1000) per event.
    expect((await client(slow.url).post('/api/v1/ledger/handler-delay', { ms: 3_000 })).status).toBe(200)
    await record([other.url], 10)

    expect(await eventually(async () => (await effects(other.url)).length >= 10, WAIT)).toBe(true)
    await Bun.sleep(300)
    const duplicates = async (url: string) => {
      const text = await (await fetch(`${url}/metrics`)).text()
      return Number(text.split('\n').find((l) => l.startsWith('events_handled_total{') && l.includes('outcome="duplicate"'))?.split(' ').pop() ?? 0)
    }
    expect((await duplicates(slow.url)) + (await duplicates(other.url))).toBe(0)
    expect((await handled(slow.url, LEDGER)) + (await handled(other.url, LEDGER))).toBe(10)
    expect(await handled(slow.url, LEDGER)).toBeGreaterThan(0)
  }, SLOW)

  test('two different plugins subscribed to a type, each in its own process, each get every event', async () => {
    const { env } = sharedStore()
    const dirs = `${env.PLUGINS_DIR},${join(ROOT, 'tests/fixtures/bus-plugins')}`
    const ledger = await spawn({ ...env, PLUGINS: 'ledger', PLUGINS_DIR: dirs })
    const tally = await spawn({ ...env, PLUGINS: 'tally', PLUGINS_DIR: dirs })
    await record([ledger.url], 15)

    expect(await eventually(async () => (await effects(ledger.url)).length >= 15, WAIT)).toBe(true)
    const seen = async () => (await client(tally.url).get('/api/v1/tally/seen')).body as string[]
    expect(await eventually(async () => (await seen()).length >= 15, WAIT)).toBe(true)
    await Bun.sleep(300)
    expect([...(await seen())].sort()).toEqual((await effects(ledger.url)).map((e) => e.eventId).sort())
    expect(await handled(tally.url, TALLY)).toBe(15)
    expect(await handled(ledger.url, LEDGER)).toBe(15)
  }, SLOW)
})

describe.skipIf(!services.redisUrl)(`Redis Streams bus: trimming and dead letters (${variant})`, () => {
  const redis = services.redisUrl ? new Redis(services.redisUrl) : (undefined as never)
  afterAll(() => redis?.quit())

  test('entries every group acknowledged are trimmed, and no stream keeps more than EVENT_STREAM_MAXLEN', async () => {
    const server = await startServer({ EVENT_BUS: 'redis-streams', EVENT_STREAM_MAXLEN: '10', EVENT_STREAM_TRIM_INTERVAL_MS: '50', PLUGINS: 'ledger' })
    try {
      const stream = `${server.env.REDIS_PREFIX}events:${TYPE}`
      // A group that never reads, as a subscriber that is down for long.
      await redis.xgroup('CREATE', stream, 'laggard', '$')
      // One at a time, so that the ledger's own group never falls 10 behind (the bound would drop its entries too).
      const ids: string[] = []
      for (let i = 0; i < 30; i++) {
        ids.push(...(await record([server.url], 1)))
        expect(await eventually(async () => (await effects(server.url)).length === i + 1, WAIT)).toBe(true)
      }
      expect(await eventually(async () => (await redis.xlen(stream)) === 10, WAIT)).toBe(true)
      // The laggard lost the oldest 20; what it can still read is the newest 10.
      const kept = (await redis.xrange(stream, '-', '+')).map(([, fields]) => JSON.parse(fields[fields.indexOf('payload') + 1]).entryId as string)
      expect(kept).toEqual(ids.slice(-10))

      // Without the laggard, everything was acknowledged by every group that is left.
      await redis.xgroup('DESTROY', stream, 'laggard')
      expect(await eventually(async () => (await redis.xlen(stream)) === 0, WAIT)).toBe(true)
      expect(await effects(server.url)).toHaveLength(30)
    } finally {
      await server.stop()
    }
  }, SLOW)

  // Only PostgreSQL can be taken away from under a running server: its schema is renamed.
  describe.skipIf(!services.databaseUrl)('when the database is unreachable', () => {
    let server: Awaited<ReturnType<typeof startServer>>
    let sql: ReturnType<typeof postgres>
    let schema: string
    const stream = () => `${server.env.REDIS_PREFIX}events:${TYPE}`
    const deadLetters = () => `${server.env.REDIS_PREFIX}events-dead-letters`
    const setDatabase = (up: boolean) => sql.unsafe(up ? `alter schema "${schema}_away" rename to "${schema}"` : `alter schema "${schema}" rename to "${schema}_away"`)
    /** An event as a publisher's relay would add it. */
    const publish = async () => {
      const event = { id: Bun.randomUUIDv7(), entryId: Bun.randomUUIDv7() }
      const fields = ['id', event.id, 'type', TYPE, 'source', 'ledger', 'occurredAt', new Date().toISOString(), 'headers', '{}', 'payload', JSON.stringify({ entryId: event.entryId })]
      return { ...event, entry: (await redis.xadd(stream(), '*', ...fields)) as string }
    }
    const deliveries = async (entry: string) => {
      const rows = (await redis.call('XPENDING', stream(), LEDGER, entry, entry, 1)) as [string, string, number, number][]
      return rows[0]?.[3] ?? 0
    }

    beforeAll(async () => {
      server = await startServer({ EVENT_BUS: 'redis-streams', EVENT_MAX_ATTEMPTS: '3', EVENT_RETRY_BASE_MS: '50', PLUGINS: 'ledger' })
      schema = new URL(server.env.DATABASE_URL).searchParams.get('schema')!
      sql = postgres(services.databaseUrl!, { max: 1, onnotice: () => {} })
    })
    afterAll(async () => {
      await sql?.end()
      await server?.stop()
    })

    test('an event the kernel cannot settle is delivered again with backoff, then moved to the dead-letter stream', async () => {
      await setDatabase(false)
      const event = await publish()
      const letter = await eventually(async () => (await redis.xrange(deadLetters(), '-', '+')).find(([, f]) => f.includes(event.entry)), WAIT)
      await setDatabase(true)
      expect(letter).toBeDefined()
      const fields = letter![1]
      const field = (name: string) => fields[fields.indexOf(name) + 1]
      expect(field('group')).toBe(LEDGER)
      expect(field('stream')).toBe(stream())
      expect(field('deliveries')).toBe('3')
      expect(field('id')).toBe(event.id)
      expect(field('error').length).toBeGreaterThan(0)
      expect(await deliveries(event.entry)).toBe(0) // acknowledged: no longer pending
      expect((await effects(server.url)).filter((e) => e.eventId === event.id)).toEqual([])
    }, SLOW)

    test('an event whose delivery failed while the database was away is handled once when it returns', async () => {
      await setDatabase(false)
      const event = await publish()
      // Delivered and failed at least once, redelivered from Redis: then the database comes back.
      expect(await eventually(async () => (await deliveries(event.entry)) >= 2, WAIT)).toBe(true)
      await setDatabase(true)
      expect(await eventually(async () => (await effects(server.url)).some((e) => e.eventId === event.id), WAIT)).toBe(true)
      await Bun.sleep(300)
      expect((await effects(server.url)).filter((e) => e.eventId === event.id)).toHaveLength(1)
      expect((await redis.xrange(deadLetters(), '-', '+')).filter(([, f]) => f.includes(event.entry))).toEqual([])
    }, SLOW)
  })
})
