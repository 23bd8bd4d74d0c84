/**
 * SQLite's write-ahead log stays bounded under a steady stream of writes: the checkpointer thread
 * copies it while the writer goes on, and the writer waits only for the last copy, between its
 * transactions, after which the log starts over. Nothing written meanwhile is lost. (The bound is
 * made small here; in production it is 64 MB.)
 */
import { afterAll, expect, test } from 'bun:test'
import { rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { count } from 'drizzle-orm'
import { materialize } from '../kernel/db'
import { openSqlite } from '../kernel/db/sqlite'
import { schema as ledgerSchema } from './fixtures/plugins/ledger/schema'
import { ROOT } from './harness'

const file = join(tmpdir(), `tessera-wal-${Bun.randomUUIDv7()}.db`)
const { entries } = materialize(ledgerSchema, 'sqlite')
afterAll(() => {
  for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
})

test('the log stays bounded while writes keep coming, and every write is kept', async () => {
  const maxWalBytes = 1 << 20
  const db = openSqlite(`sqlite:${file}`, { maxWalBytes, checkpointMs: 50 })
  await db.migrate(join(ROOT, 'tests/fixtures/plugins/ledger/migrations/sqlite'), '__migrations_ledger')
  const note = 'x'.repeat(2000)
  const perTransaction = 20
  // 48 times the bound goes through the log, one transaction after another (a server's pace: each
  // lets the event loop turn), while the copies run.
  const transactions = Math.ceil((48 * maxWalBytes) / (perTransaction * note.length))
  let largest = 0
  for (let i = 0; i < transactions; i++) {
    await db.transaction((tx) => tx.insert(entries).values(Array.from({ length: perTransaction }, () => ({ id: Bun.randomUUIDv7(), note, at: new Date() }))))
    largest = Math.max(largest, statSync(`${file}-wal`).size)
    await Bun.sleep(1)
  }
  const [{ rows }] = await db.read.select({ rows: count() }).from(entries)
  await db.close()
  expect(rows).toBe(transactions * perTransaction)
  // The bound is looked at after each copy, and writes go on during the copies before the held one.
  expect(largest).toBeLessThan(16 * maxWalBytes)
}, 30_000)
