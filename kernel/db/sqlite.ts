/**
 * SQLite adapter (bun:sqlite). drizzle's bun:sqlite transactions commit at the first await
 * (drizzle-orm #1472, #2275), and one connection serves every request, so this adapter runs its own
 * BEGIN IMMEDIATE … COMMIT from a queue (WriteQueue): transactions never interleave, and a write
 * from another request cannot land inside someone else's transaction. Reads use a second, read-only
 * connection (WAL), so they never see uncommitted writes.
 */
import { Database as Sqlite } from 'bun:sqlite'
import { AsyncLocalStorage } from 'node:async_hooks'
import { mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { drizzle } from 'drizzle-orm/bun-sqlite'
import { migrate } from 'drizzle-orm/bun-sqlite/migrator'
import type { PgTable } from 'drizzle-orm/pg-core'
import { type BulkPlan, driverValue, type InsertManyOptions, planInsert, returned } from './bulk'
import type { Database, Db, Reader } from './port'
import { COPIED, COPY_MS, type CheckpointerMessage, FRAMES } from './sqlite-checkpoint-protocol'
import { params } from './prepared'
import { runHooks, TransactionScope } from './transaction-scope'

/** Work for the writer connection: a transaction's body, or (`alone`) something that needs the connection outside any transaction. */
interface Task {
  body: (hooks: (() => void)[]) => Promise<unknown>
  alone: boolean
  resolve(value: unknown): void
  reject(error: unknown): void
}

/** Transactions stored by one COMMIT at most: bounds how long the first of a group waits for its answer. */
const MAX_GROUP = 64

/**
 * Group commit. Transactions run one at a time on the writer connection, first asked first run.
 * One that ends while others already wait does not commit alone: the waiting ones run on in the
 * same SQLite transaction, each in a savepoint (a failure rolls back its own work only),
 * and one COMMIT stores the group. Every caller hears back after that COMMIT, never before. A
 * commit writes each page it changed to the log and costs a few system calls: shared once per group.
 */
class WriteQueue {
  private readonly waiting: Task[] = []
  private draining = false
  private readonly begin
  private readonly commit
  private readonly rollback
  private readonly savepoint
  private readonly release
  private readonly undo

  constructor(private readonly writer: Sqlite) {
    // Built once: run with a string, each would be compiled anew every time.
    this.begin = writer.prepare('BEGIN IMMEDIATE')
    this.commit = writer.prepare('COMMIT')
    this.rollback = writer.prepare('ROLLBACK')
    this.savepoint = writer.prepare('SAVEPOINT grouped')
    this.release = writer.prepare('RELEASE grouped')
    this.undo = writer.prepare('ROLLBACK TO grouped')
  }

  /** Runs `body` in a transaction of its own or of a group; `alone`: outside any transaction. */
  run<T>(body: (hooks: (() => void)[]) => Promise<T>, alone = false): Promise<T> {
    // The body runs later, from the queue: in the asynchronous context of its caller, not of whoever drains.
    const inCaller = AsyncLocalStorage.snapshot()
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ body: (hooks) => inCaller(body, hooks), alone, resolve: resolve as (v: unknown) => void, reject })
      if (!this.draining) void this.drain()
    })
  }

  private async drain() {
    this.draining = true
    try {
      for (let task = this.waiting.shift(); task; task = this.waiting.shift()) {
        if (task.alone) await task.body([]).then(task.resolve, task.reject)
        else await this.group(task)
      }
    } finally {
      this.draining = false
    }
  }

  private async group(first: Task) {
    const done: { task: Task; value: unknown; hooks: (() => void)[] }[] = []
    try {
      this.begin.run()
    } catch (error) {
      return first.reject(error) // e.g. another process held the database past busy_timeout
    }
    for (let task: Task | undefined = first; task; task = this.next(done.length)) {
      const hooks: (() => void)[] = []
      // The first needs no savepoint: when it fails, the whole transaction (only its own work) rolls back.
      const saved = task !== first
      try {
        if (saved) this.savepoint.run()
        const value = await task.body(hooks)
        if (saved) this.release.run()
        done.push({ task, value, hooks })
      } catch (error) {
        task.reject(error)
        if (saved && this.undoLast()) continue
        // The first failed, or SQLite gave up the whole transaction: nothing of this group is stored.
        this.abandon()
        return this.fail(done, error)
      }
    }
    try {
      this.commit.run()
    } catch (error) {
      this.abandon()
      return this.fail(done, error)
    }
    for (const { task, value, hooks } of done) {
      try {
        runHooks(hooks)
        task.resolve(value)
      } catch (error) {
        task.reject(error)
      }
    }
  }

  /**
   * The next transaction of this group, if one is already waiting and the group may grow. (Waiting
   * one more turn of the event loop for late arrivals was tried: small transactions gained nothing
   * measurable, and a writer whose own batches are large lost a fifth or more of its throughput to
   * longer groups; BENCHMARKS.md.)
   */
  private next(size: number): Task | undefined {
    if (size >= MAX_GROUP || !this.writer.inTransaction) return undefined
    const task = this.waiting[0]
    if (!task || task.alone) return undefined
    return this.waiting.shift()
  }

  /** Takes back the work of the last savepoint; false when that cannot be done (the transaction is gone). */
  private undoLast(): boolean {
    if (!this.writer.inTransaction) return false
    try {
      this.undo.run()
      this.release.run()
      return true
    } catch {
      return false
    }
  }

  private abandon() {
    try {
      if (this.writer.inTransaction) this.rollback.run()
    } catch {
      // Already gone.
    }
  }

  private fail(done: { task: Task }[], error: unknown) {
    for (const { task } of done) task.reject(error)
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
 * The log is copied into the database file on another thread (sqlite-checkpointer.ts) every second.
 * Under steady writes such a copy never catches up with the writer, and the log starts over only
 * once a copy has caught up before the next transaction begins: past MAX_WAL_BYTES the writer waits
 * for one, holding its queue but not the event loop. First, up to PRE_COPIES copies run while it
 * goes on, each taking what was written during the one before and syncing what it wrote, so that it
 * waits only for the rest and the fsyncs that let the log start over: 55–100 ms under a steady write
 * load, where a single held copy took 100–190 ms, and 85–190 ms while the copies before it left
 * their pages for its fsync (BENCHMARKS.md, MQTT ingestion).
 */
const MAX_WAL_BYTES = 64 * 1024 * 1024
const CHECKPOINT_MS = 1000
const PRE_COPIES = 3
/** A copy this quick has caught up with the writer: the held one will be as quick. */
const CAUGHT_UP_MS = 15

function startCheckpointer(path: string, pageSize: number, bounds: WalBounds) {
  const { maxWalBytes = MAX_WAL_BYTES, checkpointMs = CHECKPOINT_MS } = bounds
  const worker = new Worker(new URL('./sqlite-checkpointer.ts', import.meta.url).href)
  worker.unref()
  // Written by the worker: the frames in the log after its last copy, the copies asked for that it
  // has done, and how long the last of them took (sqlite-checkpointer.ts).
  const shared = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT))
  worker.postMessage({ type: 'open', path, intervalMs: checkpointMs, shared } satisfies CheckpointerMessage)
  let asked = 0
  let settle: (() => void) | undefined
  // The copy waited for is over: noticed on the worker's message, or by the writer after a
  // transaction (a writer that never lets the event loop turn would not see the message).
  const notice = () => {
    if (!settle || Atomics.load(shared, COPIED) < asked) return
    const resolve = settle
    settle = undefined
    resolve()
  }
  worker.addEventListener('message', (e: MessageEvent) => e.data === 'copied' && notice())
  const copyOnce = () =>
    new Promise<void>((resolve) => {
      asked++
      // A worker that stopped answering holds nobody up for long.
      const timeout = setTimeout(() => settle?.(), 5000)
      settle = () => {
        clearTimeout(timeout)
        settle = undefined
        resolve()
      }
      worker.postMessage({ type: 'copy' } satisfies CheckpointerMessage)
    })
  let copying = false
  return {
    /** Called after each transaction: whether the log has grown past its bound. */
    due() {
      notice()
      return !copying && Atomics.load(shared, FRAMES) * pageSize > maxWalBytes
    },
    /** Copies the whole log: mostly while the writer goes on, the rest in `held` (between its transactions). */
    async copy(held: (last: () => Promise<void>) => Promise<void>) {
      copying = true
      try {
        // Until a copy is quick, or no quicker than the one before (a writer outpacing the copies).
        for (let round = 0, before = Infinity; round < PRE_COPIES; round++) {
          await copyOnce()
          const ms = Atomics.load(shared, COPY_MS)
          if (ms < CAUGHT_UP_MS || ms >= before) break
          before = ms
        }
        await held(copyOnce)
        // The log starts over at the next transaction.
        Atomics.store(shared, FRAMES, 0)
      } finally {
        copying = false
      }
    },
    async stop() {
      await new Promise<void>((resolve) => {
        const timeout = setTimeout(resolve, 2000)
        worker.addEventListener('message', (e: MessageEvent) => e.data === 'stopped' && (clearTimeout(timeout), resolve()))
        worker.postMessage({ type: 'stop' } satisfies CheckpointerMessage)
      })
      await worker.terminate()
    },
  }
}

/** How large the log may grow, and how often it is copied (defaults above; tests make them small). */
export interface WalBounds {
  maxWalBytes?: number
  checkpointMs?: number
}

export function openSqlite(url: string, bounds: WalBounds = {}): Database {
  const target = url.slice('sqlite:'.length)
  // `sqlite::memory:` is an ephemeral file, because an in-memory database cannot be shared by the two connections.
  const ephemeral = target === ':memory:'
  const path = ephemeral ? join(tmpdir(), `tessera-${Bun.randomUUIDv7()}.db`) : target
  mkdirSync(dirname(path), { recursive: true })

  const writer = new Sqlite(path, { create: true, readwrite: true, strict: true })
  // A 64 MB page cache (the default is 2 MB): hot indexes stay in memory as tables grow.
  // Checkpoints run on a worker thread (sqlite-checkpointer.ts), not inside a COMMIT on the event loop.
  writer.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;')
  const checkpointer = startCheckpointer(path, (writer.query('PRAGMA page_size').get() as { page_size: number }).page_size, bounds)
  const reader = new Sqlite(path, { readonly: true, strict: true })
  reader.exec('PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;')

  const writeDb = drizzle({ client: withStatementCache(writer) }) as unknown as Db
  const readDb = drizzle({ client: withStatementCache(reader) }) as unknown as Reader
  const queue = new WriteQueue(writer)
  const scope = new TransactionScope()
  const plans = new Map<string, BulkPlan>()

  const database: Database = {
    dialect: 'sqlite',
    read: readDb,
    insertMany(table: PgTable, rows: Record<string, unknown>[], options: InsertManyOptions = {}): Promise<never[]> {
      if (rows.length === 0) return Promise.resolve([])
      // Inside the transaction the writer connection is ours alone (the queue), so plain statements on it belong to it.
      return database.transaction(async () => {
        const plan = planInsert('sqlite', table, rows, options, plans)
        const out: Record<string, unknown>[] = []
        // A value the row itself gives, without an upsert: whether the row was written is the change
        // count, and the value is the row's. RETURNING would cost more than the insert (~60 % more a row).
        const { given } = plan
        const statement = writer.query(given >= 0 ? plan.insert : plan.text)
        for (const row of rows as Record<string, unknown>[]) {
          const values = plan.columns.map((c, i) => driverValue(c, row[plan.keys[i]!])) as never[]
          if (!plan.returning) statement.run(...values)
          else if (given >= 0) {
            if (statement.run(...values).changes > 0) out.push({ [plan.returning[0]![0]]: values[given] })
          } else {
            const got = statement.get(...values) as Record<string, unknown> | null
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
        // Transactions share the writer connection, one at a time (the queue): a statement prepared on it runs in the current one.
        if (!scope.current()) return Promise.reject(new Error(`statement ${name} was given a transaction that is over`))
        return (onWriter ??= build(writeDb, params).prepare(name)).execute(values)
      }
    },
    transaction(fn) {
      const joined = scope.current()
      if (joined) return fn(joined.tx)
      return queue.run(async (hooks) => {
        const result = await scope.within(writeDb, hooks, fn)
        // After this group's commit, behind the transactions already waiting; this one's caller does not wait for it.
        if (checkpointer.due()) void checkpointer.copy((last) => queue.run(last, true))
        return result
      })
    },
    afterCommit: (fn) => scope.afterCommit(fn),
    async migrate(folder, table) {
      await queue.run(async () => migrate(writeDb as never, { migrationsFolder: folder, migrationsTable: table }), true)
    },
    async ping() {
      reader.query('select 1').get()
    },
    async close() {
      await queue.run(async () => {
        reader.close()
        writer.close()
        // Last: it closes a descriptor of the file, which would drop the connections' locks (sqlite-checkpointer.ts).
        await checkpointer.stop()
      }, true)
      if (ephemeral) for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true })
    },
  }
  return database
}

