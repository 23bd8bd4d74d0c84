/**
 * The database port's promises, on the active dialect (SQLite by default, PostgreSQL in the
 * real-services run): transactions are atomic even across awaits, and on SQLite's single
 * connection one request's rollback never takes another request's writes with it.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { join } from 'node:path'
import { and, eq, lt, sql } from 'drizzle-orm'
import { type Database, inListed, materialize, openDatabase, type Params } from '../kernel/db'
import { isUniqueViolation, sqlState } from '../kernel/db/errors'
import { schema as kernelSchema } from '../kernel/events/schema'
import { schema as inventorySchema } from '../plugins/inventory/schema'
import { schema as ledgerSchema } from './fixtures/plugins/ledger/schema'
import { ROOT, client, isolatedStore, startServer, type TestServer, variant } from './harness'

const store = isolatedStore()
let db: Database
const dialect = store.env.DATABASE_URL.startsWith('sqlite') ? 'sqlite' : 'postgres'
const { entries } = materialize(ledgerSchema, dialect)
// A real plugin's tables, for every column kind: text, integer, bigint, boolean, timestamp, NULL.
const { levels } = materialize(inventorySchema, dialect)
// A JSON column: the outbox's payload.
const { outbox } = materialize(kernelSchema, dialect)
const entry = (note: string) => ({ id: Bun.randomUUIDv7(), note, at: new Date() })
const notes = async () => (await db.read.select().from(entries)).map((e) => e.note).sort()

beforeAll(async () => {
  db = openDatabase(store.env.DATABASE_URL)
  await db.migrate(join(ROOT, 'tests/fixtures/plugins/ledger/migrations', db.dialect), '__migrations_ledger')
  await db.migrate(join(ROOT, 'plugins/inventory/migrations', db.dialect), '__migrations_inventory')
  await db.migrate(join(ROOT, 'kernel/migrations', db.dialect), '__migrations_kernel')
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

  test('of transactions that wait together, one that fails loses only its own writes, and each caller hears back once its writes can be read', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    // The first holds the writer while the others queue behind it (on SQLite they then share one commit).
    const first = db.transaction(async (tx) => {
      await tx.insert(entries).values(entry('grouped-first'))
      await gate
    })
    const seen: Record<string, number> = {}
    const visible = async (note: string) => (seen[note] = (await db.read.select().from(entries).where(eq(entries.note, note))).length)
    const queued = Array.from({ length: 10 }, (_, i) =>
      db
        .transaction(async (tx) => {
          await tx.insert(entries).values(entry(`grouped-${i}`))
          await Bun.sleep(1)
          if (i % 3 === 1) throw new Error(`grouped-${i} fails`)
          await tx.insert(entries).values(entry(`grouped-${i}-after`))
        })
        .then(() => visible(`grouped-${i}-after`))
        .then(
          () => 'committed',
          () => 'failed',
        ),
    )
    await Bun.sleep(20)
    release()
    await first
    expect(await visible('grouped-first')).toBe(1)
    const outcomes = await Promise.all(queued)
    const all = await notes()
    for (let i = 0; i < 10; i++) {
      const fails = i % 3 === 1
      expect(outcomes[i]).toBe(fails ? 'failed' : 'committed')
      expect(all.includes(`grouped-${i}`)).toBe(!fails)
      expect(all.includes(`grouped-${i}-after`)).toBe(!fails)
      if (!fails) expect(seen[`grouped-${i}-after`]).toBe(1)
    }
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

  test('JSON values of every kind are stored as JSON (not as JSON text) by insert, insertMany and update, and read back identically', async () => {
    const payloads: unknown[] = [{ a: 1, nested: { b: [1, 'x', null] } }, [{ a: 1 }, 2, 'three'], [], 'dark', '{"looks":"like json"}', 42, 1.5, true, false]
    const row = (payload: unknown) => ({ id: Bun.randomUUIDv7(), type: 'json.kinds', source: 'db-test', payload, headers: { h: 'v' }, occurredAt: new Date() })
    const single = payloads.map(row)
    const many = payloads.map(row)
    await db.transaction(async (tx) => {
      for (const r of single) await tx.insert(outbox).values(r)
    })
    await db.insertMany(outbox, many)
    const updated = row({ before: true })
    await db.transaction(async (tx) => {
      await tx.insert(outbox).values(updated)
      await tx.update(outbox).set({ payload: 7 }).where(eq(outbox.id, updated.id))
    })
    const read = new Map((await db.read.select().from(outbox).where(eq(outbox.type, 'json.kinds'))).map((r) => [r.id, r]))
    for (const [i, payload] of payloads.entries()) {
      expect(read.get(single[i]!.id)?.payload).toEqual(payload)
      expect(read.get(many[i]!.id)?.payload).toEqual(payload)
      expect(read.get(single[i]!.id)?.headers).toEqual({ h: 'v' })
    }
    expect(read.get(updated.id)?.payload).toBe(7)
    if (db.dialect === 'postgres') {
      // PostgreSQL's own view: an object is an object, a number a number (JSON operators work on them).
      const kinds = await db.read
        .select({ id: outbox.id, kind: sql<string>`jsonb_typeof(${outbox.payload})`, a: sql<string | null>`${outbox.payload}->>'a'` })
        .from(outbox)
        .where(eq(outbox.type, 'json.kinds'))
      const kindOf = new Map(kinds.map((k) => [k.id, k]))
      const expected = ['object', 'array', 'array', 'string', 'string', 'number', 'number', 'boolean', 'boolean']
      for (const [i, kind] of expected.entries()) {
        expect(kindOf.get(single[i]!.id)?.kind).toBe(kind)
        expect(kindOf.get(many[i]!.id)?.kind).toBe(kind)
      }
      expect(kindOf.get(single[0]!.id)?.a).toBe('1')
      expect(kindOf.get(updated.id)?.kind).toBe('number')
    }
  })

  test('a broken unique key and a deadlock are told apart by their codes (PostgreSQL: the SQLSTATE)', async () => {
    const duplicate = entry('unique-once')
    await db.transaction((tx) => tx.insert(entries).values(duplicate))
    const failure = await db.transaction((tx) => tx.insert(entries).values(duplicate)).catch((e: unknown) => e)
    expect(isUniqueViolation(failure)).toBe(true)
    if (db.dialect !== 'postgres') return
    expect(sqlState(failure)).toBe('23505')
    // Two transactions locking two rows in opposite orders: PostgreSQL breaks the cycle with 40P01.
    const [a, b] = [entry('deadlock-a'), entry('deadlock-b')]
    await db.transaction((tx) => tx.insert(entries).values([a, b]))
    const lockBoth = (first: string, second: string) =>
      db.transaction(async (tx) => {
        await tx.update(entries).set({ note: sql`${entries.note}` }).where(eq(entries.id, first))
        await Bun.sleep(100)
        await tx.update(entries).set({ note: sql`${entries.note}` }).where(eq(entries.id, second))
      })
    const outcomes = await Promise.allSettled([lockBoth(a.id, b.id), lockBoth(b.id, a.id)])
    const states = outcomes.map((o) => (o.status === 'rejected' ? sqlState(o.reason) : 'committed')).sort()
    expect(states).toEqual(['40P01', 'committed'])
  })

  test('insertMany writes every column kind as the table defines it, and reads back identically', async () => {
    const at = new Date(Date.UTC(2026, 10, 23, 12, 0, 0, 123))
    const rows = Array.from({ length: 1200 }, (_, i) => ({
      sku: `BULK-${i}`,
      warehouse: i % 2 ? 'W"1' : "W'2",
      onHand: i - 600,
      reserved: i % 7,
      lastCountTs: i % 3 ? 1_767_225_600_000 + i : null,
      lowAlerted: i % 5 === 0,
      updatedAt: at,
    }))
    const inserted = await db.insertMany(levels, rows, { returning: 'sku' })
    expect(inserted).toEqual(rows.map((r) => r.sku))
    const back = await db.read.select().from(levels)
    const bySku = new Map(back.map((r) => [r.sku, r]))
    for (const row of rows) expect(bySku.get(row.sku)).toEqual(row)
  })

  test('insertMany with onConflictDoNothing returns only the rows it inserted; without it a conflict fails and writes nothing', async () => {
    const row = (sku: string) => ({ sku, warehouse: 'WX', onHand: 1, updatedAt: new Date() })
    await db.insertMany(levels, [row('DUP-1'), row('DUP-2')])
    const got = await db.insertMany(levels, [row('DUP-2'), row('DUP-3'), row('DUP-1'), row('DUP-4')], { onConflictDoNothing: true, returning: 'sku' })
    expect(got.sort()).toEqual(['DUP-3', 'DUP-4'])
    // Left out: the column's default (reserved 0, lowAlerted false).
    const [three] = await db.read.select().from(levels).where(eq(levels.sku, 'DUP-3'))
    expect(three).toMatchObject({ onHand: 1, reserved: 0, lowAlerted: false, lastCountTs: null })
    await expect(db.insertMany(levels, [row('DUP-5'), row('DUP-1')])).rejects.toThrow()
    expect(await db.read.select().from(levels).where(eq(levels.sku, 'DUP-5'))).toEqual([])
  })

  test("insertMany with onConflictDoNothing: 'rare' returns every row when none conflicts, only the new ones when some do, and the transaction goes on either way", async () => {
    const row = (sku: string, onHand = 1) => ({ sku, warehouse: 'WR', onHand, updatedAt: new Date() })
    const [clean, mixed, after] = await db.transaction(async (tx) => {
      const clean = await db.insertMany(levels, [row('RARE-1'), row('RARE-2')], { onConflictDoNothing: 'rare', returning: 'sku' })
      // RARE-2 is stored already: PostgreSQL's plain insert is refused, and the rows go again without it.
      const mixed = await db.insertMany(levels, [row('RARE-3'), row('RARE-2', 99), row('RARE-4')], { onConflictDoNothing: 'rare', returning: 'sku' })
      // Statements after a refused plain insert still run in the same transaction.
      const after = await db.insertMany(levels, [row('RARE-5')], { onConflictDoNothing: 'rare', returning: 'sku' })
      await tx.update(levels).set({ reserved: 1 }).where(eq(levels.sku, 'RARE-1'))
      return [clean, mixed, after]
    })
    expect(clean.sort()).toEqual(['RARE-1', 'RARE-2'])
    expect(mixed.sort()).toEqual(['RARE-3', 'RARE-4'])
    expect(after).toEqual(['RARE-5'])
    const stored = new Map((await db.read.select().from(levels).where(eq(levels.warehouse, 'WR'))).map((l) => [l.sku, l]))
    expect([...stored.keys()].sort()).toEqual(['RARE-1', 'RARE-2', 'RARE-3', 'RARE-4', 'RARE-5'])
    expect(stored.get('RARE-2')!.onHand).toBe(1)
    expect(stored.get('RARE-1')!.reserved).toBe(1)
    // Whole rows back, through the same two paths.
    const whole = await db.insertMany(levels, [row('RARE-6', 6), row('RARE-1', 7)], { onConflictDoNothing: 'rare', returning: '*' })
    expect(whole.map((l) => [l.sku, l.onHand])).toEqual([['RARE-6', 6]])
  })

  test('insertMany with onConflictDoUpdate inserts new rows, updates stored ones where its condition holds, and returns whole rows for exactly those', async () => {
    const at = new Date(Date.UTC(2026, 10, 24, 6, 0, 0, 123))
    await db.insertMany(levels, [
      { sku: 'UPS-1', warehouse: 'WX', onHand: 10, lastCountTs: 100, updatedAt: at },
      { sku: 'UPS-2', warehouse: 'WX', onHand: 20, lastCountTs: 500, updatedAt: at },
    ])
    const later = new Date(at.getTime() + 1000)
    const upsert = {
      target: ['sku', 'warehouse'],
      set: { onHand: sql`${levels.onHand} + excluded.on_hand`, updatedAt: sql`excluded.updated_at` },
      where: sql`coalesce(${levels.lastCountTs}, -1) < excluded.last_count_ts`,
    }
    const rows = (ts: number) => [
      { sku: 'UPS-1', warehouse: 'WX', onHand: 3, lastCountTs: ts, updatedAt: later }, // stored, condition holds: 10 + 3
      { sku: 'UPS-2', warehouse: 'WX', onHand: 4, lastCountTs: ts, updatedAt: later }, // stored, condition fails: left alone
      { sku: 'UPS-3', warehouse: 'WX', onHand: 5, lastCountTs: ts, updatedAt: later }, // new: inserted as given
    ]
    const got = await db.transaction(() => db.insertMany(levels, rows(300), { onConflictDoUpdate: upsert, returning: '*' }))
    expect(got.sort((a, b) => a.sku.localeCompare(b.sku))).toEqual([
      { sku: 'UPS-1', warehouse: 'WX', onHand: 13, reserved: 0, lastCountTs: 100, lowAlerted: false, updatedAt: later },
      { sku: 'UPS-3', warehouse: 'WX', onHand: 5, reserved: 0, lastCountTs: 300, lowAlerted: false, updatedAt: later },
    ])
    const stored = await db.read.select().from(levels).where(and(eq(levels.warehouse, 'WX'), sql`${levels.sku} like 'UPS-%'`))
    expect(Object.fromEntries(stored.map((l) => [l.sku, [l.onHand, l.updatedAt.getTime()]]))).toEqual({
      'UPS-1': [13, later.getTime()],
      'UPS-2': [20, at.getTime()],
      'UPS-3': [5, later.getTime()],
    })
    // The same statement again, planned once: only the rows whose condition holds change.
    expect((await db.insertMany(levels, rows(600), { onConflictDoUpdate: upsert, returning: '*' })).map((l) => [l.sku, l.onHand]).sort()).toEqual([
      ['UPS-1', 16],
      ['UPS-2', 24],
      ['UPS-3', 10],
    ])
    await expect(db.insertMany(levels, rows(700), { onConflictDoUpdate: { ...upsert, set: { onHand: sql`${levels.onHand} + ${1}` } } })).rejects.toThrow('holds values')
  })

  test('PostgreSQL plans every statement for its values (a generic plan of a prepared search ignored them)', async () => {
    if (db.dialect !== 'postgres') return
    const [row] = (await db.transaction((tx) => tx.execute(sql`select current_setting('plan_cache_mode') as mode`))) as unknown as { mode: string }[]
    expect(row.mode).toBe('force_custom_plan')
  })

  test('inListed selects the rows whose column is in a JSON list of any length, and on PostgreSQL an index finds them (no scan of the whole table)', async () => {
    const at = new Date()
    const rows = Array.from({ length: 30_000 }, (_, i) => ({ sku: `LIST-${i}`, warehouse: i % 3 ? 'WL1' : 'WL2', onHand: i, updatedAt: at }))
    await db.insertMany(levels, rows)
    const wanted = ['LIST-7', 'LIST-9', 'LIST-3000', 'LIST-29999', 'LIST-none']
    const query = (skus: string[], warehouses: string[]) =>
      db.read
        .select()
        .from(levels)
        .where(and(inListed(db.dialect, levels.sku, sql`${JSON.stringify(skus)}`), inListed(db.dialect, levels.warehouse, sql`${JSON.stringify(warehouses)}`)))
    expect((await query(wanted, ['WL1'])).map((l) => l.sku).sort()).toEqual(['LIST-29999', 'LIST-7'])
    expect((await query(wanted, ['WL1', 'WL2'])).map((l) => l.sku).sort()).toEqual(['LIST-29999', 'LIST-3000', 'LIST-7', 'LIST-9'])
    expect(await query([], ['WL1'])).toEqual([])
    if (db.dialect !== 'postgres') return
    const plan = await db.transaction(async (tx) => {
      await tx.execute(sql`analyze ${levels}`)
      return (await tx.execute(sql`explain ${query(wanted, ['WL1'])}`)) as unknown as { 'QUERY PLAN': string }[]
    })
    const text = plan.map((r) => r['QUERY PLAN']).join('\n')
    expect(text).toContain('Index Cond: (sku = ANY')
    expect(text).not.toContain('Seq Scan')
  })

  test('statements in flight together on one connection each get their own rows (Bun.SQL pipelining, bun#32772, bun#33627)', async () => {
    const one = openDatabase(store.env.DATABASE_URL, { poolSize: 1 })
    try {
      await one.insertMany(levels, [{ sku: 'PIPE-A', warehouse: 'WP', onHand: 1, updatedAt: new Date() }, { sku: 'PIPE-B', warehouse: 'WP', onHand: 2, updatedAt: new Date() }])
      const onHand = one.prepare('test.pipe', (q, p: Params<{ sku: string }>) => q.select({ onHand: levels.onHand }).from(levels).where(eq(levels.sku, p('sku'))))
      for (let i = 0; i < 30; i++) {
        const [a, fresh, b, other] = await Promise.all([
          onHand(one.read as never, { sku: 'PIPE-A' }),
          // A statement text not seen before (prepared on the way) between two that are.
          one.read.select({ sku: levels.sku, n: sql<number>`${levels.onHand} + ${i}`.as(`n${i}`) }).from(levels).where(eq(levels.sku, 'PIPE-B')),
          onHand(one.read as never, { sku: 'PIPE-B' }),
          one.transaction((tx) => tx.select({ sku: levels.sku }).from(levels).where(and(eq(levels.warehouse, 'WP'), eq(levels.sku, 'PIPE-A')))),
        ])
        expect(a).toEqual([{ onHand: 1 }])
        expect(fresh).toEqual([{ sku: 'PIPE-B', n: 2 + i }])
        expect(b).toEqual([{ onHand: 2 }])
        expect(other).toEqual([{ sku: 'PIPE-A' }])
      }
    } finally {
      await one.close()
    }
  })

  test('insertMany inside a transaction is part of it and rolls back with it', async () => {
    await expect(
      db.transaction(async () => {
        await db.insertMany(levels, [{ sku: 'ROLLED', warehouse: 'WX', onHand: 5, updatedAt: new Date() }])
        await Bun.sleep(5)
        throw new Error('undo')
      }),
    ).rejects.toThrow('undo')
    expect(await db.read.select().from(levels).where(eq(levels.sku, 'ROLLED'))).toEqual([])
    expect(await db.insertMany(levels, [])).toEqual([])
  })

  test('a prepared statement runs with other values each time, in the transaction it is given, with values stored as their columns store them', async () => {
    const bump = db.prepare('test.bump', (q, p: Params<{ sku: string; by: number; at: Date }>) =>
      q
        .update(levels)
        .set({ onHand: sql`${levels.onHand} + ${p('by', levels.onHand)}`, updatedAt: p('at', levels.updatedAt) })
        .where(and(eq(levels.sku, p('sku')), lt(levels.updatedAt, p('at', levels.updatedAt))))
        .returning(),
    )
    const level = db.prepare('test.level', (q, p: Params<{ sku: string }>) => q.select().from(levels).where(eq(levels.sku, p('sku'))))
    const before = new Date(Date.UTC(2026, 0, 1))
    await db.insertMany(levels, ['PREP-1', 'PREP-2'].map((sku) => ({ sku, warehouse: 'WP', onHand: 10, updatedAt: before })))
    const at = new Date(Date.UTC(2026, 5, 1, 0, 0, 0, 7))
    const [one] = await db.transaction((tx) => bump(tx, { sku: 'PREP-1', by: 5, at }))
    expect(one).toMatchObject({ sku: 'PREP-1', onHand: 15, updatedAt: at })
    // The Date in the condition compares as the column stores it: the row updated at `at` is not older than `at`.
    expect(await db.transaction((tx) => bump(tx, { sku: 'PREP-1', by: 5, at }))).toEqual([])
    expect((await level(db.read, { sku: 'PREP-2' }))[0]).toMatchObject({ onHand: 10, updatedAt: before })
    // Part of the transaction it is given: a rollback takes its write back.
    await expect(
      db.transaction(async (tx) => {
        await bump(tx, { sku: 'PREP-2', by: 1, at })
        await Bun.sleep(5)
        throw new Error('undo')
      }),
    ).rejects.toThrow('undo')
    expect((await level(db.read, { sku: 'PREP-2' }))[0].onHand).toBe(10)
    // Many at once, each in its own transaction, each with its own values.
    await Promise.all(Array.from({ length: 20 }, (_, i) => db.transaction((tx) => bump(tx, { sku: 'PREP-2', by: 1, at: new Date(at.getTime() + i) }))))
    expect((await level(db.read, { sku: 'PREP-2' }))[0].onHand).toBeGreaterThanOrEqual(11)
    expect((await level(db.read, { sku: 'NONE' })).length).toBe(0)
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
