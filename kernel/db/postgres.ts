/**
 * PostgreSQL adapter (Bun's own client, `Bun.SQL`, through drizzle's bun-sql driver: its socket
 * writes cost the server about a fifth less CPU per ingested reading than postgres.js on node:net,
 * BENCHMARKS.md). `?schema=<name>` in DATABASE_URL confines the deployment to one schema (created
 * if missing); tests use it to run side by side in one database.
 */
import { SQL } from 'bun'
import { sql } from 'drizzle-orm'
import type { PgTable } from 'drizzle-orm/pg-core'
import { drizzle } from 'drizzle-orm/bun-sql'
import { migrate } from 'drizzle-orm/bun-sql/migrator'
import { type BulkPlan, driverValue, type InsertManyOptions, planInsert, returned } from './bulk'
import { isUniqueViolation } from './errors'
import type { Database, Db } from './port'
import { params } from './prepared'
import { runHooks, TransactionScope } from './transaction-scope'

/**
 * A PostgreSQL array literal, sent as text and cast by the statement (`$1::integer[]`), so that
 * every column's array takes the same path whatever its element type.
 */
function arrayLiteral(values: unknown[]): string {
  const items = values.map((v) => {
    if (v === null) return 'NULL'
    if (typeof v === 'number') return String(v)
    const text = v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v)
    return NEEDS_ESCAPE.test(text) ? `"${text.replace(ESCAPED, '\\$&')}"` : `"${text}"`
  })
  return `{${items.join(',')}}`
}
const NEEDS_ESCAPE = /[\\"]/
const ESCAPED = /[\\"]/g

/** The Bun.SQL connection a drizzle database or transaction runs its statements on (drizzle's bun-sql session). */
function connectionOf(on: unknown): SQL {
  const client = (on as { session?: { client?: SQL } }).session?.client
  if (!client) throw new Error('not a drizzle bun-sql database or transaction')
  return client
}

/**
 * `onConflictDoNothing: 'rare'` (bulk.ts): the rows go in plainly inside a savepoint, the three
 * statements sent at once; only when a unique key refuses one does `skipping` insert them again,
 * leaving out the conflicts. The value returned for each row is read from the rows themselves when
 * they give it, as every row was written.
 */
async function insertRarelyConflicting(conn: SQL, plain: BulkPlan, skipping: BulkPlan, rows: Record<string, unknown>[], columns: string[]): Promise<unknown[]> {
  const { given } = plain
  const [, inserted, released] = await Promise.allSettled([
    conn.unsafe('savepoint insert_many'),
    conn.unsafe(given >= 0 ? plain.insert : plain.text, columns),
    conn.unsafe('release savepoint insert_many'),
  ])
  if (inserted.status === 'fulfilled' && released.status === 'fulfilled') {
    if (given < 0) return returned(plain, inserted.value)
    const key = plain.keys[given]!
    return rows.map((row) => row[key])
  }
  const error = inserted.status === 'rejected' ? inserted.reason : (released as PromiseRejectedResult).reason
  if (!isUniqueViolation(error)) throw error
  await conn.unsafe('rollback to savepoint insert_many')
  await conn.unsafe('release savepoint insert_many')
  return returned(skipping, await conn.unsafe(skipping.text, columns))
}

export function openPostgres(url: string, options: { max?: number } = {}): Database {
  const parsed = new URL(url)
  const schema = parsed.searchParams.get('schema') ?? 'public'
  parsed.searchParams.delete('schema')
  if (!/^[a-z_][a-z0-9_]*$/i.test(schema)) throw new Error(`DATABASE_URL schema must be an identifier (got ${schema})`)

  const client = new SQL(parsed.toString(), {
    max: options.max ?? 10,
    // PGAPPNAME names the connections as libpq and postgres.js do (pg_stat_activity, the benchmarks).
    // Custom plans always: Bun.SQL prepares every statement by name, and after five runs PostgreSQL
    // may keep a generic plan that ignores the values, which doubled the p95 of a search's second
    // page (11.5 → 21.4 ms); a few array-bound statements run thousands of times a second pay
    // ~10 % more PostgreSQL CPU for it (BENCHMARKS.md).
    connection: { search_path: schema, plan_cache_mode: 'force_custom_plan', ...(process.env.PGAPPNAME ? { application_name: process.env.PGAPPNAME } : {}) },
    connectionTimeout: 5,
  })
  const db = drizzle({ client }) as unknown as Db
  const scope = new TransactionScope()
  let schemaReady: Promise<unknown> | undefined
  const ensureSchema = () => (schemaReady ??= client.unsafe(`create schema if not exists "${schema}"`))

  const plans = new Map<string, BulkPlan>()

  const database: Database = {
    dialect: 'postgres',
    read: db,
    insertMany(table: PgTable, rows: Record<string, unknown>[], options: InsertManyOptions = {}): Promise<never[]> {
      if (rows.length === 0) return Promise.resolve([])
      return database.transaction(async (tx) => {
        const plan = planInsert('postgres', table, rows, options, plans)
        // One array per column; the statement text (and so its plan) is the same for any number of rows.
        const columns = plan.columns.map((c, i) => {
          const json = c.getSQLType() === 'jsonb'
          // Rows of a batch often share a value (one Date for all): it is converted once.
          let last: unknown = undefined
          let lastText: unknown = undefined
          return arrayLiteral(
            (rows as Record<string, unknown>[]).map((row) => {
              const value = row[plan.keys[i]!]
              if (value === last && value !== undefined) return lastText
              last = value
              // A JSON value is written as its text in the array (see jsonColumn in schema.ts for single values).
              return (lastText = json && value !== null && value !== undefined ? JSON.stringify(value) : driverValue(c, value))
            }),
          )
        })
        const conn = connectionOf(tx)
        if (options.onConflictDoNothing !== 'rare' || options.onConflictDoUpdate) return returned(plan, await conn.unsafe(plan.text, columns)) as never
        return insertRarelyConflicting(conn, planInsert('postgres', table, rows, { ...options, onConflictDoNothing: false }, plans), plan, rows, columns) as never
      })
    },
    prepare(name, build) {
      let built: ReturnType<ReturnType<typeof build>['prepare']> | undefined
      return (on, values) => {
        built ??= build(db, params).prepare(name)
        if (on === db) return built.execute(values)
        // Built once: a transaction runs the same statement on its own connection (drizzle's prepared query runs `this.client`).
        return (Object.create(built, { client: { value: connectionOf(on) } }) as typeof built).execute(values)
      }
    },
    async transaction(fn) {
      const joined = scope.current()
      if (joined) return fn(joined.tx)
      const hooks: (() => void)[] = []
      const result = await db.transaction((tx) => scope.within(tx as unknown as Db, hooks, fn))
      runHooks(hooks)
      return result
    },
    afterCommit: (fn) => scope.afterCommit(fn),
    async migrate(folder, table) {
      // One process migrates at a time; the others wait, then find nothing left to do.
      const conn = await client.reserve()
      try {
        await conn`select pg_advisory_lock(hashtext(${'tessera-migrate:' + schema}))`
        // Under the lock: concurrent `create schema if not exists` can still collide on PostgreSQL's catalog (duplicate key).
        await ensureSchema()
        await migrate(db as never, { migrationsFolder: folder, migrationsTable: table, migrationsSchema: schema })
      } finally {
        await conn`select pg_advisory_unlock(hashtext(${'tessera-migrate:' + schema}))`.catch(() => {})
        conn.release()
      }
    },
    async ping() {
      await db.execute(sql`select 1`)
    },
    async close() {
      await client.close({ timeout: 5 })
    },
  }
  return database
}
