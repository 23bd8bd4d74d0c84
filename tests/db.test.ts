/**
 * The database port's promises, on the active dialect (SQLite by default, PostgreSQL in the
 * real-services run): transactions are atomic even across awaits, and on SQLite's single
 * connection one request's rollback never takes another request's writes with it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { type Database, materialize, openDatabase } from '../kernel/db'
import { schema as ledgerSchema } from './fixtures/plugins/ledger/schema'
import { ROOT, client, isolatedStore, startServer, type TestServer, variant } from './harness'

const store = isolatedStore()
let db: Database
const { entries } = materialize(ledgerSchema, store.env.DATABASE_URL.startsWith('sqlite') ? 'sqlite' : 'postgres')
const entry = (note: string) => ({ id: Bun.randomUUIDv7(), note, at: new Date() })
const notes = async () => (await db.read.select().from(entries)).map((e) => e.note).sort()

beforeAll(async () => {
  db = openDatabase(store.env.DATABASE_URL)
  await db.migrate(join(ROOT, 'tests/fixtures/plugins/ledger/migrations', db.dialect), '__migrations_ledger')
})
afterAll(async () => {
  await db.close()
  await store.cleanup()
})

describe(`database port (${variant})`, () => {
  test('a throw after an await inside a transaction rolls every write back', async () => {
    const failing = db.transaction(async (tx) => {
      await tx.insert(entries).values(entry('rollback-1'))
      await Bun.sleep(20)
      await tx.insert(entries).values(entry('rollback-2'))
      await Bun.sleep(5)
      throw new Error('after the await')
    })
    await expect(failing).rejects.toThrow('after the await')
    expect(await notes()).not.toContain('rollback-1')
    expect(await notes()).not.toContain('rollback-2')
  })

  test("concurrent writes all survive another transaction's rollback", async () => {
    const doomed = db.transaction(async (tx) => {
      await tx.insert(entries).values(entry('doomed'))
      await Bun.sleep(50)
      throw new Error('doomed')
    })
    const others = Array.from({ length: 20 }, (_, i) => db.transaction((tx) => tx.insert(entries).values(entry(`survivor-${i}`))))
    await expect(doomed).rejects.toThrow('doomed')
    await Promise.all(others)
    const all = await notes()
    expect(all).not.toContain('doomed')
    for (let i = 0; i < 20; i++) expect(all).toContain(`survivor-${i}`)
  })

  test('a transaction opened inside another joins it and rolls back with it', async () => {
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(entries).values(entry('outer'))
        await db.transaction(async (inner) => void (await inner.insert(entries).values(entry('inner'))))
        throw new Error('outer fails')
      }),
    ).rejects.toThrow('outer fails')
    expect(await notes()).not.toContain('outer')
    expect(await notes()).not.toContain('inner')
  })

  test('after-commit hooks run once the transaction commits, and never after a rollback', async () => {
    const seen: string[] = []
    await db.transaction(async (tx) => {
      await tx.insert(entries).values(entry('hooked'))
      db.afterCommit(() => seen.push('committed'))
      expect(seen).toEqual([])
    })
    expect(seen).toEqual(['committed'])
    await db
      .transaction(async () => {
        db.afterCommit(() => seen.push('rolled back'))
        throw new Error('no')
      })
      .catch(() => {})
    expect(seen).toEqual(['committed'])
  })

  test('reads outside a transaction never see its uncommitted writes', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const row = entry('uncommitted')
    const writing = db.transaction(async (tx) => {
      await tx.insert(entries).values(row)
      await gate
    })
    await Bun.sleep(20)
    expect(await db.read.select().from(entries).where(eq(entries.id, row.id))).toEqual([])
    release()
    await writing
    expect((await db.read.select().from(entries).where(eq(entries.id, row.id))).length).toBe(1)
  })

  test('the value returned by a transaction is what its callback returned', async () => {
    const rows = await db.transaction((tx) => tx.insert(entries).values(entry('returned')).returning())
    expect(rows.map((r) => r.note)).toEqual(['returned'])
    expect(rows[0].at).toBeInstanceOf(Date)
  })
})

describe(`transactions across HTTP requests (${variant})`, () => {
  let server: TestServer
  beforeAll(async () => (server = await startServer()))
  afterAll(() => server.stop())

  test("requests writing while another request's transaction awaits and then fails all keep their writes", async () => {
    const api = client(server.url)
    const doomed = api.post('/api/v1/ledger/entries', { note: 'doomed-request', pauseMs: 100, failAfterAwait: true })
    await Bun.sleep(10)
    const others = await Promise.all(Array.from({ length: 25 }, (_, i) => api.post('/api/v1/ledger/entries', { note: `req-${i}` })))
    expect((await doomed).status).toBe(409)
    expect(others.map((r) => r.status)).toEqual(Array(25).fill(201))
    const stored = (await api.get('/api/v1/ledger/entries')).body.map((e: { note: string }) => e.note)
    expect(stored).not.toContain('doomed-request')
    for (let i = 0; i < 25; i++) expect(stored).toContain(`req-${i}`)
  })
})
