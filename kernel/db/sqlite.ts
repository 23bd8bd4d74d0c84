/**
 * SQLite adapter (bun:sqlite). drizzle's bun:sqlite transactions commit at the first await
 * (drizzle-orm #1472, #2275), and one connection serves every request, so this adapter runs its own
 * BEGIN IMMEDIATE … COMMIT while holding an async lock: transactions never interleave, and a write
 * from another request cannot land inside someone else's transaction. Reads use a second, read-only
 * connection (WAL), so they never see uncommitted writes.
 */
import { Database as Sqlite } from 'bun:sqlite'
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { drizzle } from 'drizzle-orm/bun-sqlite'
import { migrate } from 'drizzle-orm/bun-sqlite/migrator'
import { type BulkPlan, driverValue, planInsert, returned } from './bulk'
import type { Database, Db, Reader } from './port'
import { params } from './prepared'
import { runHooks, TransactionScope } from './transaction-scope'

/** A FIFO async lock. */
class Lock {
  private tail: Promise<void> = Promise.resolve()

  async hold<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail
    let release!: () => void
    this.tail = new Promise<void>((r) => (release = r))
    await previous
    try {
      return await fn()
    } finally {
      release()
    }
  }
}

/**
 * drizzle compiles every statement anew (`prepare`); this keeps compiled statements by their SQL,
 * so the same statement with other values costs a lookup instead of a compile. Bounded (least
 * recently used out): `IN (…)` lists of every length would otherwise each stay compiled forever.
 */
const STATEMENT_CACHE_SIZE = 500

function withStatementCache(client: Sqlite): Sqlite {
  const cache = new Map<string, ReturnType<Sqlite['prepare']>>()
  const prepare = (sql: string) => {
    let statement = cache.get(sql)
    if (statement) cache.delete(sql)
    else {
      statement = client.prepare(sql)
      // Dropped, not finalized: a statement prepared for later (drizzle's .prepare()) may still be held.
      if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!)
    }
    cache.set(sql, statement)
    return statement
  }
  return new Proxy(client, {
    get(target, property) {
      if (property === 'prepare') return prepare
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/**
 * The log is copied into the database file on another thread (sqlite-checkpointer.ts) every second;
 * past MAX_WAL_BYTES the writer waits, holding its lock but not the event loop, for a copy to
 * complete, so the log starts over.
 */
const MAX_WAL_BYTES = 64 * 1024 * 1024

function startCheckpointer(path: string) {
  const worker = new Worker(new URL('./sqlite-checkpointer.ts', import.meta.url).href)
  worker.unref()
  worker.postMessage({ type: 'open', path, intervalMs: 1000 })
  const reply = (expected: string, send: object, timeoutMs: number) =>
    new Promise<void>((resolve) => {
      const timeout = setTimeout(done, timeoutMs)
      function done() {
        clearTimeout(timeout)
        worker.removeEventListener('message', onMessage)
        resolve()
      }
      function onMessage(e: MessageEvent) {
        if (e.data === expected) done()
      }
      worker.addEventListener('message', onMessage)
      worker.postMessage(send)
    })
  let commits = 0
  return {
    /** Called after each commit: every 16 commits, whether the log has grown past its bound. */
    due() {
      return ++commits % 16 === 0 && (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0) > MAX_WAL_BYTES
    },
    /** Copies the whole log; to be run holding the writer's lock. */
    copy: () => reply('copied', { type: 'copy' }, 5000),
    async stop() {
      await reply('stopped', { type: 'stop' }, 2000)
      await worker.terminate()
    },
  }
}

export function openSqlite(url: string): Database {
  const target = url.slice('sqlite:'.length)
  // `sqlite::memory:` is an ephemeral file, because an in-memory database cannot be shared by the two connections.
  const ephemeral = target === ':memory:'
  const path = ephemeral ? join(tmpdir(), `tessera-${Bun.randomUUIDv7()}.db`) : target
  mkdirSync(dirname(path), { recursive: true })

  const writer = new Sqlite(path, { create: true, readwrite: true, strict: true })
  // A 64 MB page cache (the default is 2 MB): hot indexes stay in memory as tables grow.
  // Checkpoints run on a worker thread (sqlite-checkpointer.ts), not inside a COMMIT on the event loop.
  writer.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0;')
  const checkpointer = startCheckpointer(path)
  const reader = new Sqlite(path, { readonly: true, strict: true })
  reader.exec('PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;')

  const writeDb = drizzle({ client: withStatementCache(writer) }) as unknown as Db
  const readDb = drizzle({ client: withStatementCache(reader) }) as unknown as Reader
  const lock = new Lock()
  const scope = new TransactionScope()
  const plans = new Map<string, BulkPlan>()

  const database: Database = {
    dialect: 'sqlite',
    read: readDb,
    insertMany(table, rows, options = {}) {
      if (rows.length === 0) return Promise.resolve([])
      // Inside the transaction the writer connection is ours alone (the lock), so plain statements on it belong to it.
      return database.transaction(async () => {
        const plan = planInsert('sqlite', table, rows, options, plans)
        const statement = writer.query(plan.text)
        const out: { r: unknown }[] = []
        for (const row of rows as Record<string, unknown>[]) {
          const values = plan.columns.map((c, i) => driverValue(c, row[plan.keys[i]!])) as never[]
          if (!plan.returning) statement.run(...values)
          else {
            const got = statement.get(...values) as { r: unknown } | null
            if (got) out.push(got)
          }
        }
        return returned(plan, out) as never
      })
    },
    prepare(name, build) {
      let onReader: ReturnType<ReturnType<typeof build>['prepare']> | undefined
      let onWriter: typeof onReader
      return (on, values) => {
        if (on === readDb) return (onReader ??= build(readDb as Db, params).prepare(name)).execute(values)
        // Transactions share the writer connection, one at a time (the lock): a statement prepared on it runs in the current one.
        if (!scope.current()) return Promise.reject(new Error(`statement ${name} was given a transaction that is over`))
        return (onWriter ??= build(writeDb, params).prepare(name)).execute(values)
      }
    },
    transaction(fn) {
      const joined = scope.current()
      if (joined) return fn(joined.tx)
      return lock.hold(async () => {
        const hooks: (() => void)[] = []
        writer.run('BEGIN IMMEDIATE')
        try {
          const result = await scope.within(writeDb, hooks, fn)
          writer.run('COMMIT')
          runHooks(hooks)
          // Queued behind the transactions already waiting; this one's caller does not wait for it.
          if (checkpointer.due()) void lock.hold(checkpointer.copy)
          return result
        } catch (error) {
          if (writer.inTransaction) writer.run('ROLLBACK')
          throw error
        }
      })
    },
    afterCommit: (fn) => scope.afterCommit(fn),
    async migrate(folder, table) {
      await lock.hold(async () => migrate(writeDb as never, { migrationsFolder: folder, migrationsTable: table }))
    },
    async ping() {
      reader.query('select 1').get()
    },
    async close() {
      await lock.hold(async () => {
        await checkpointer.stop()
        reader.close()
        writer.close()
      })
      if (ephemeral) for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
    },
  }
  return database
}

