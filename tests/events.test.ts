/**
 * The event bus contract. Every bus adapter must pass this suite; it runs once per adapter the
 * kernel has (the in-process bus, and the Redis Streams bus when TEST_REDIS_URL points at Redis), on
 * the active database. Everything is driven through the public surface: HTTP, the dead-letter API,
 * /metrics, and a real child process killed with SIGKILL.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { inArray } from 'drizzle-orm'
import { materialize, openDatabase } from '../kernel/db'
import { eventTables } from '../kernel/events/schema'
import { schema as ledgerSchema } from './fixtures/plugins/ledger/schema'
import { adminToken, baseEnv, client, eventually, isolatedStore, services, spawnServer, startServer, type TestServer, variant } from './harness'

const CONSUMER = 'ledger:ledger.entry.recorded'
// The Redis Streams bus needs Redis: it runs with the services (TEST_REDIS_URL), not embedded.
const busAdapters = ['in-process', ...(services.redisUrl ? ['redis-streams'] : [])]

const metric = async (url: string, outcome: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('events_handled_total{') && l.includes(`consumer="${CONSUMER}"`) && l.includes(`outcome="${outcome}"`))
  return line ? Number(line.split(' ').pop()) : 0
}

type OutboxRow = ReturnType<typeof materialize<typeof eventTables>>['outbox']['$inferSelect']

/** Runs `check` with a reader of the server's outbox rows, on a database connection of its own. */
async function withOutbox<T>(databaseUrl: string, check: (rows: () => Promise<OutboxRow[]>) => Promise<T>): Promise<T> {
  const db = openDatabase(databaseUrl)
  const { outbox } = materialize(eventTables, db.dialect)
  try {
    return await check(() => db.read.select().from(outbox))
  } finally {
    await db.close()
  }
}

for (const bus of busAdapters) {
  describe(`event bus contract: ${bus} (${variant})`, () => {
    let server: TestServer
    let admin: string
    const api = () => client(server.url)
    const effects = async () => (await api().get('/api/v1/ledger/effects')).body as { entryId: string; eventId: string }[]
    const effectsOf = async (entryId: string) => (await effects()).filter((e) => e.entryId === entryId)

    beforeAll(async () => {
      server = await startServer({ EVENT_BUS: bus, EVENT_MAX_ATTEMPTS: '3', EVENT_RETRY_BASE_MS: '5' })
      admin = await adminToken(server.url)
    })
    afterAll(() => server.stop())

    test('an event committed with its state change is delivered to the handler once', async () => {
      const { body } = await api().post('/api/v1/ledger/entries', { note: 'delivered' })
      const handled = await eventually(async () => (await effectsOf(body.id)).length === 1)
      expect(handled).toBe(true)
      await Bun.sleep(150)
      expect(await effectsOf(body.id)).toHaveLength(1)
    })

    test('a state change that rolls back publishes nothing', async () => {
      const before = (await effects()).length
      const r = await api().post('/api/v1/ledger/entries', { note: 'never', failAfterAwait: true })
      expect(r.status).toBe(409)
      await Bun.sleep(300)
      expect((await api().get('/api/v1/ledger/entries')).body.map((e: { note: string }) => e.note)).not.toContain('never')
      expect((await effects()).length).toBe(before)
    })

    test('a handler that fails is retried and then succeeds without being dead-lettered', async () => {
      const retriedBefore = await metric(server.url, 'retried')
      await api().post('/api/v1/ledger/failures', { count: 2 })
      const { body } = await api().post('/api/v1/ledger/entries', { note: 'flaky' })
      expect(await eventually(async () => (await effectsOf(body.id)).length === 1)).toBe(true)
      expect((await metric(server.url, 'retried')) - retriedBefore).toBe(2)
      const letters = await api().get('/api/v1/events/dead-letters', admin)
      expect(letters.body.items.filter((d: { payload: { entryId: string } }) => d.payload.entryId === body.id)).toEqual([])
    })

    test('a handler that fails every attempt is dead-lettered, then an admin replays it once', async () => {
      await api().post('/api/v1/ledger/failures', { count: 1000 })
      const { body } = await api().post('/api/v1/ledger/entries', { note: 'poison' })
      const letter = await eventually(async () => {
        const r = await api().get('/api/v1/events/dead-letters', admin)
        return r.body.items.find((d: { payload: { entryId: string } }) => d.payload.entryId === body.id)
      })
      expect(letter).toMatchObject({ consumer: CONSUMER, type: 'ledger.entry.recorded', source: 'ledger', attempts: 3, replayedAt: null })
      expect(letter.error).toContain('told to fail')
      expect(await effectsOf(body.id)).toHaveLength(0)
      expect((await api().get(`/api/v1/events/dead-letters/${letter.id}`, admin)).body.id).toBe(letter.id)

      // Still failing: the replay parks it again and says so.
      const again = await api().post(`/api/v1/events/dead-letters/${letter.id}/replay`, undefined, admin)
      expect(again.status).toBe(200)
      expect(again.body.outcome).toBe('dead_lettered')

      await api().post('/api/v1/ledger/failures', { count: 0 })
      const replay = await api().post(`/api/v1/events/dead-letters/${letter.id}/replay`, undefined, admin)
      expect(replay.status).toBe(200)
      expect(replay.body.outcome).toBe('handled')
      expect(replay.body.deadLetter.replayedAt).not.toBeNull()
      expect(await effectsOf(body.id)).toHaveLength(1)

      // Replaying a handled dead letter again has no second effect.
      const twice = await api().post(`/api/v1/events/dead-letters/${letter.id}/replay`, undefined, admin)
      expect(twice.body.outcome).toBe('handled')
      expect(await effectsOf(body.id)).toHaveLength(1)
    })

    test('the dead-letter API answers 404 for an unknown id and pages with a cursor', async () => {
      expect((await api().get(`/api/v1/events/dead-letters/${Bun.randomUUIDv7()}`, admin)).status).toBe(404)
      expect((await api().post(`/api/v1/events/dead-letters/${Bun.randomUUIDv7()}/replay`, undefined, admin)).status).toBe(404)
      await api().post('/api/v1/ledger/failures', { count: 1000 })
      await api().post('/api/v1/ledger/entries', { note: 'poison-2' })
      await api().post('/api/v1/ledger/entries', { note: 'poison-3' })
      await eventually(async () => (await api().get('/api/v1/events/dead-letters', admin)).body.items.length >= 3)
      await api().post('/api/v1/ledger/failures', { count: 0 })
      const seen: string[] = []
      let cursor: string | null = null
      do {
        const r: { body: { items: { id: string }[]; nextCursor: string | null } } = await api().get(
          `/api/v1/events/dead-letters?limit=1${cursor ? `&cursor=${cursor}` : ''}`,
          admin,
        )
        seen.push(...r.body.items.map((d) => d.id))
        cursor = r.body.nextCursor
      } while (cursor)
      expect(seen.length).toBeGreaterThanOrEqual(3)
      expect(new Set(seen).size).toBe(seen.length)
    })

    test("one consumer's events are handled one transaction at a time: what arrives meanwhile waits and goes together", async () => {
      await api().post('/api/v1/ledger/handler-delay', { ms: 40 })
      await api().post('/api/v1/ledger/handler-concurrency', {})
      try {
        // Separate commits a little apart: the relay hands them over while earlier ones are being handled.
        const ids: string[] = []
        for (let i = 0; i < 8; i++) {
          ids.push((await api().post('/api/v1/ledger/entries', { note: `one-at-a-time-${i}` })).body.id)
          await Bun.sleep(15)
        }
        const all = await eventually(async () => {
          const done = new Set((await effects()).map((e) => e.entryId))
          return ids.every((id) => done.has(id))
        }, 20_000)
        expect(all).toBe(true)
        expect((await api().post('/api/v1/ledger/handler-concurrency', {})).body.mostAtOnce).toBe(1)
        for (const id of ids) expect(await effectsOf(id)).toHaveLength(1)
      } finally {
        await api().post('/api/v1/ledger/handler-delay', { ms: 0 })
      }
    })

    test('a duplicate delivery of a handled event has no second effect', async () => {
      const { body } = await api().post('/api/v1/ledger/entries', { note: 'duplicated' })
      const [first] = await eventually(async () => {
        const e = await effectsOf(body.id)
        return e.length === 1 ? e : undefined
      }) ?? []
      expect(first).toBeDefined()
      const duplicatesBefore = await metric(server.url, 'duplicate')
      // Make the relay believe it never handed the event over, as after a crash between delivery and bookkeeping.
      const db = openDatabase(server.env.DATABASE_URL)
      const { outbox } = materialize(eventTables, db.dialect)
      await db.transaction((tx) => tx.update(outbox).set({ publishedAt: null, leaseUntil: null }).where(inArray(outbox.id, [first.eventId])))
      await db.close()
      expect(await eventually(async () => (await metric(server.url, 'duplicate')) > duplicatesBefore)).toBe(true)
      expect(await effectsOf(body.id)).toHaveLength(1)
    })

    test('a consumer declared idempotent gets no processed-event record, and a repeated delivery is handed to it again', async () => {
      const { body } = await api().post('/api/v1/ledger/entries', { note: 'tallied', tally: true })
      const tallies = async () => (await api().get('/api/v1/ledger/tallies')).body as Record<string, number>
      const db = openDatabase(server.env.DATABASE_URL)
      const { outbox, processed } = materialize(eventTables, db.dialect)
      try {
        const row = (await db.read.select().from(outbox)).find((r) => r.type === 'ledger.entry.tallied' && (r.payload as { entryId?: string }).entryId === body.id)
        expect(row).toBeDefined()
        expect(await eventually(async () => (await tallies())[row!.id] === 1)).toBe(true)
        const records = await db.read.select().from(processed).where(inArray(processed.eventId, [row!.id]))
        expect(records).toEqual([])
        const duplicatesBefore = await metric(server.url, 'duplicate')
        // Delivered again, as after a crash between delivery and bookkeeping: no record stops it.
        await db.transaction((tx) => tx.update(outbox).set({ publishedAt: null, leaseUntil: null }).where(inArray(outbox.id, [row!.id])))
        expect(await eventually(async () => (await tallies())[row!.id] === 2)).toBe(true)
        expect(await metric(server.url, 'duplicate')).toBe(duplicatesBefore)
      } finally {
        await db.close()
      }
    })
  })

  describe(`event bus contract: ${bus}, hand-off after commit (${variant})`, () => {
    test('committed events reach the bus at once, without waiting for a sweep, and their rows are marked published', async () => {
      // A relay interval far longer than the test: only the hand-off after commit can deliver them.
      const server = await startServer({ EVENT_BUS: bus, EVENT_RELAY_INTERVAL_MS: '600000' })
      try {
        await Bun.sleep(100) // past the sweep that runs at start
        const notes = Array.from({ length: 20 }, (_, i) => `hand-off ${i}`)
        const ids = (await Promise.all(notes.map((note) => client(server.url).post('/api/v1/ledger/entries', { note })))).map((r) => r.body.id as string)
        const effects = await eventually(async () => {
          const r = await client(server.url).get('/api/v1/ledger/effects')
          const mine = (r.body as { entryId: string; eventId: string }[]).filter((e) => ids.includes(e.entryId))
          return mine.length === ids.length ? mine : undefined
        }, 3_000)
        expect(effects?.length).toBe(ids.length)
        await withOutbox(server.env.DATABASE_URL, async (rows) => {
          const unpublished = async () => (await rows()).filter((r) => effects!.some((e) => e.eventId === r.id) && (r.publishedAt === null || r.leaseUntil !== null))
          expect(await eventually(async () => (await unpublished()).length === 0, 3_000)).toBe(true)
        })
      } finally {
        await server.stop()
      }
    })
  })

  describe(`event bus contract: ${bus}, events recorded together (${variant})`, () => {
    test('events recorded together are each delivered once, and after the hand-off nothing is left to publish', async () => {
      const server = await startServer({ EVENT_BUS: bus })
      try {
        const { body } = await client(server.url).post('/api/v1/ledger/entries', { note: 'together', events: 5 })
        const effects = await eventually(async () => {
          const r = await client(server.url).get('/api/v1/ledger/effects')
          const mine = (r.body as { entryId: string; eventId: string }[]).filter((e) => e.entryId === body.id)
          return mine.length >= 5 ? mine : undefined
        })
        expect(new Set(effects?.map((e) => e.eventId)).size).toBe(5)
        await withOutbox(server.env.DATABASE_URL, async (rows) => {
          const unpublished = async () => (await rows()).filter((r) => r.type === 'ledger.entry.recorded' && r.publishedAt === null)
          expect(await eventually(async () => (await unpublished()).length === 0, 3_000)).toBe(true)
        })
        // Past the relay interval: a sweep finds nothing to publish again.
        await Bun.sleep(1_500)
        const again = (await client(server.url).get('/api/v1/ledger/effects')).body as { entryId: string }[]
        expect(again.filter((e) => e.entryId === body.id).length).toBe(5)
      } finally {
        await server.stop()
      }
    })
  })

  describe(`event bus contract: ${bus}, outbox retention (${variant})`, () => {
    test('a published event is deleted from the outbox once the retention has passed', async () => {
      const server = await startServer({ EVENT_BUS: bus, EVENT_RETENTION_SECONDS: '1' })
      try {
        const { body } = await client(server.url).post('/api/v1/ledger/entries', { note: 'kept for a second' })
        expect(await eventually(async () => (await client(server.url).get('/api/v1/ledger/effects')).body.some((e: { entryId: string }) => e.entryId === body.id))).toBe(true)
        await withOutbox(server.env.DATABASE_URL, async (all) => {
          const rows = async () => (await all()).filter((r) => r.type === 'ledger.entry.recorded')
          expect((await rows()).length).toBe(1)
          expect(await eventually(async () => (await rows()).length === 0, 5_000)).toBe(true)
        })
      } finally {
        await server.stop()
      }
    })
  })

  describe(`event bus contract: ${bus}, across a crash (${variant})`, () => {
    const store = isolatedStore()
    afterAll(() => store.cleanup())

    test('an event committed just before the process dies is delivered after the restart', async () => {
      const env = baseEnv({ ...store.env, EVENT_BUS: bus })
      const first = await spawnServer(env)
      const crashed = await fetch(`${first.url}/api/v1/ledger/entries`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ note: 'before the crash', crashAfterCommit: true }),
      }).catch((e: Error) => e)
      expect(crashed).toBeInstanceOf(Error)
      await first.proc.exited
      expect(first.proc.signalCode).toBe('SIGKILL')

      // The state change committed, its event is in the outbox, and nobody handled it yet.
      const db = openDatabase(store.env.DATABASE_URL)
      const { entries, effects } = materialize(ledgerSchema, db.dialect)
      const { outbox } = materialize(eventTables, db.dialect)
      const [entry] = await db.read.select().from(entries)
      expect(entry.note).toBe('before the crash')
      expect(await db.read.select().from(effects)).toEqual([])
      const pending = (await db.read.select().from(outbox)).filter((r) => r.type === 'ledger.entry.recorded')
      expect(pending.map((r) => r.publishedAt)).toEqual([null])
      await db.close()

      const second = await spawnServer(env)
      try {
        const handled = await eventually(async () => {
          const r = await client(second.url).get('/api/v1/ledger/effects')
          return r.body.length === 1 ? r.body : undefined
        })
        expect(handled).toEqual([{ entryId: entry.id, eventId: pending[0].id }])
      } finally {
        second.proc.kill('SIGTERM')
        expect(await second.proc.exited).toBe(0)
      }
    })

    /**
     * Records `events` events together and kills the process right after their commit, then starts it
     * again; `check` gets the handler's effects once `events` of them are there, and the restarted store.
     */
    async function recordedThenCrashed(events: number, check: (handled: { entryId: string; eventId: string }[], databaseUrl: string) => Promise<void>) {
      const isolated = isolatedStore()
      try {
        const env = baseEnv({ ...isolated.env, EVENT_BUS: bus })
        const first = await spawnServer(env)
        const crashed = await fetch(`${first.url}/api/v1/ledger/entries`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ note: `${events} before the crash`, events, crashAfterCommit: true }),
        }).catch((e: Error) => e)
        expect(crashed).toBeInstanceOf(Error)
        await first.proc.exited
        const second = await spawnServer(env)
        try {
          const handled = await eventually(async () => {
            const r = await client(second.url).get('/api/v1/ledger/effects')
            return r.body.length >= events ? (r.body as { entryId: string; eventId: string }[]) : undefined
          }, 20_000)
          expect(handled?.length).toBe(events)
          await check(handled!, env.DATABASE_URL)
        } finally {
          second.proc.kill('SIGTERM')
          expect(await second.proc.exited).toBe(0)
        }
      } finally {
        await isolated.cleanup()
      }
    }

    test('events recorded together just before the process dies are each delivered once after the restart', async () => {
      await recordedThenCrashed(3, async (handled) => {
        expect(new Set(handled.map((e) => e.eventId)).size).toBe(3)
        expect(new Set(handled.map((e) => e.entryId)).size).toBe(1)
      })
    })

    test('a backlog larger than a sweep relays at once is delivered completely, each event once, after the restart', async () => {
      // 4,500 events: five outbox rows, more than the sweep keeps in flight (about 4,000), so it relays them in steps.
      await recordedThenCrashed(4500, async (handled, databaseUrl) => {
        expect(new Set(handled.map((e) => e.eventId)).size).toBe(4500)
        await withOutbox(databaseUrl, async (rows) => {
          const unpublished = async () => (await rows()).filter((r) => r.type === 'ledger.entry.recorded' && r.publishedAt === null)
          expect(await eventually(async () => (await unpublished()).length === 0, 5_000)).toBe(true)
        })
      })
    })
  })
}
