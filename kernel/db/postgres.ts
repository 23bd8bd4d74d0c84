/**
 * PostgreSQL adapter (postgres.js). `?schema=<name>` in DATABASE_URL confines the deployment to
 * one schema (created if missing); tests use it to run side by side in one database.
 */
import postgres from 'postgres'
import { sql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import { type BulkPlan, driverValue, planInsert, returned } from './bulk'
import type { Database, Db } from './port'
import { params } from './prepared'
import { runHooks, TransactionScope } from './transaction-scope'

/**
 * A PostgreSQL array literal, sent as text and cast by the statement (`$1::integer[]`): postgres.js
 * would type some arrays from their first element (boolean, not boolean[]).
 */
function arrayLiteral(values: unknown[]): string {
  const items = values.map((v) => {
    if (v === null) return 'NULL'
    const text = v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v)
    return `"${text.replace(/[\\"]/g, '\\$&')}"`
  })
  return `{${items.join(',')}}`
}

export function openPostgres(url: string, options: { max?: number } = {}): Database {
  const parsed = new URL(url)
  const schema = parsed.searchParams.get('schema') ?? 'public'
  parsed.searchParams.delete('schema')
  if (!/^[a-z_][a-z0-9_]*$/i.test(schema)) throw new Error(`DATABASE_URL schema must be an identifier (got ${schema})`)

  const client = postgres(parsed.toString(), {
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { search_path: schema },
    connect_timeout: 5,
  })
  const db = drizzle({ client }) as unknown as Db
  const scope = new TransactionScope()
  let schemaReady: Promise<unknown> | undefined
  const ensureSchema = () => (schemaReady ??= client.unsafe(`create schema if not exists "${schema}"`))

  const plans = new Map<string, BulkPlan>()

  const database: Database = {
    dialect: 'postgres',
    read: db,
    insertMany(table, rows, options = {}) {
      if (rows.length === 0) return Promise.resolve([])
      return database.transaction(async (tx) => {
        const plan = planInsert('postgres', table, rows, options, plans)
        // One array per column; the statement text (and so its plan) is the same for any number of rows.
        const columns = plan.columns.map((c, i) => arrayLiteral((rows as Record<string, unknown>[]).map((row) => driverValue(c, row[plan.keys[i]!]))))
        const statement = sql.join(
          plan.between.flatMap((part, i) => (i === 0 ? [sql.raw(part)] : [sql.param(columns[i - 1]), sql.raw(part)])),
        )
        const result = (await tx.execute(statement)) as unknown as { r: unknown }[]
        return returned(plan, result) as never
      })
    },
    prepare(name, build) {
      let onPool: ReturnType<ReturnType<typeof build>['prepare']> | undefined
      return (on, values) => {
        if (on === db) return (onPool ??= build(db, params).prepare(name)).execute(values)
        // A transaction has a connection of its own, so its statements are made on it (built each time).
        return build(on as Db, params).prepare(name).execute(values)
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
      await client.end({ timeout: 5 })
    },
  }
  return database
}
