/**
 * Many rows into one table, for hot paths (a plugin's stream of rows, the outbox's records),
 * where building a multi-row statement through drizzle costs more than the write itself. The
 * statement is planned once per table, column set and options from the table's own definition, and
 * only the values change: PostgreSQL binds one array per column (`insert … select * from unnest(…)`:
 * the same short statement for any number of rows), SQLite runs one compiled single-row statement
 * per row (cheap there: no round trips).
 */
import { type Column, getTableColumns, getTableName, type SQL, type Table } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import { SQLiteSyncDialect } from 'drizzle-orm/sqlite-core'

export interface InsertManyOptions {
  /**
   * Skip rows that break a unique key instead of failing. `'rare'`: when they seldom do (re-sent
   * messages), PostgreSQL first inserts the rows plainly inside a savepoint, and only when a unique
   * key refuses one goes back and inserts them again skipping the conflicts: an ON CONFLICT insert
   * checks every row's keys before writing it (a speculative insertion), a third more work per row
   * (BENCHMARKS.md, MQTT ingestion, seventh session). SQLite skips conflicts at no extra cost.
   * Await statements of the same transaction before it rather than beside it: one sent while a
   * refused insert is being gone over fails with it.
   */
  onConflictDoNothing?: boolean | 'rare'
  /**
   * Where a row breaks the unique key of `target` (its properties), update the stored row instead:
   * `set` gives properties an expression over the stored row (its columns) and the proposed one
   * (`excluded.<column name>`), `where` a condition for the update (a row it refuses is left alone
   * and not returned). Expressions without values, so that the statement is planned once.
   */
  onConflictDoUpdate?: { target: string[]; set: Record<string, SQL>; where?: SQL }
  /** A property of the table: the call returns its value for each row actually written; `*`: the whole rows. */
  returning?: string
}

export interface BulkPlan {
  /** Statement text, with `$1::<type>[]` (PostgreSQL) or `?` (SQLite) placeholders. */
  text: string
  /** The same without its RETURNING clause (SQLite reads a returned value the row gives from the change count). */
  insert: string
  columns: Column[]
  /** Row property read for each column. */
  keys: string[]
  /** The columns read back (`as` their property), and whether whole rows are (`returning: '*'`). */
  returning?: [string, Column][]
  whole?: boolean
  /**
   * Where the one value returned is one the row itself gives (not an upsert, whose stored row may
   * differ): its index in `keys`, so that `insert` can be run and the value read from the row; else -1.
   */
  given: number
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/**
 * The columns are those any row gives a value for (the others take their defaults); a column given
 * in some rows only is NULL where a row leaves it out.
 */
const dialects = { postgres: new PgDialect(), sqlite: new SQLiteSyncDialect() }

/** An upsert's expression as statement text; it may name columns but hold no values. */
function render(dialect: 'postgres' | 'sqlite', expression: SQL): string {
  const { sql, params } = dialects[dialect].sqlToQuery(expression)
  if (params.length) throw new Error(`insertMany: an onConflictDoUpdate expression holds values (${sql})`)
  return sql
}

/**
 * An upsert's clause as text, by its options object: rendering goes through drizzle and costs more
 * than a small write, so callers on hot paths keep their options in a constant.
 */
const rendered = new WeakMap<NonNullable<InsertManyOptions['onConflictDoUpdate']>, string>()

export function planInsert(dialect: 'postgres' | 'sqlite', table: Table, rows: readonly Record<string, unknown>[], options: InsertManyOptions, cache: Map<string, BulkPlan>): BulkPlan {
  const present = new Set<string>()
  for (const row of rows) for (const key in row) if (row[key] !== undefined) present.add(key)
  const all = getTableColumns(table)
  const column = (key: string) => {
    if (!all[key]) throw new Error(`insertMany: ${getTableName(table)} has no column ${key}`)
    return all[key]
  }
  const keys = Object.keys(all).filter((k) => present.has(k))
  const upsert = options.onConflictDoUpdate
  let onConflict = upsert ? rendered.get(upsert) : options.onConflictDoNothing ? ' on conflict do nothing' : ''
  if (onConflict === undefined && upsert) {
    onConflict =
      ` on conflict (${upsert.target.map((k) => quote(column(k).name)).join(', ')}) do update set ` +
      Object.entries(upsert.set).map(([k, expression]) => `${quote(column(k).name)} = ${render(dialect, expression)}`).join(', ') +
      (upsert.where ? ` where ${render(dialect, upsert.where)}` : '')
    rendered.set(upsert, onConflict)
  }
  const cacheKey = `${getTableName(table)}|${keys.join(',')}|${onConflict}|${options.returning ?? ''}`
  const cached = cache.get(cacheKey)
  if (cached) return cached
  const columns = keys.map(column)
  const whole = options.returning === '*'
  const returning = options.returning === undefined ? undefined : whole ? Object.entries(all) : [[options.returning, column(options.returning)] as [string, Column]]
  const values =
    dialect === 'postgres'
      ? `select * from unnest(${columns.map((c, i) => `$${i + 1}::${c.getSQLType()}[]`).join(', ')})`
      : `values (${columns.map(() => '?').join(', ')})`
  const insert = `insert into ${quote(getTableName(table))} (${columns.map((c) => quote(c.name)).join(', ')}) ${values}${onConflict}`
  const text = insert + (returning ? ` returning ${returning.map(([k, c]) => `${quote(c.name)} as ${quote(k)}`).join(', ')}` : '')
  const given = returning && !whole && !upsert ? keys.indexOf(returning[0]![0]) : -1
  const plan: BulkPlan = { text, insert, columns, keys, returning, whole, given }
  cache.set(cacheKey, plan)
  return plan
}

/** A row's value for a column, as the driver takes it (Date → ms or ISO text, JSON → text, …). */
export function driverValue(column: Column, value: unknown): unknown {
  return value === undefined || value === null ? null : column.mapToDriverValue(value)
}

/** The returned values (or rows), read back as the table defines them. */
export function returned(plan: BulkPlan, rows: readonly Record<string, unknown>[]): unknown[] {
  if (!plan.returning) return []
  const read = (row: Record<string, unknown>, [key, column]: [string, Column]) => (row[key] === null ? null : column.mapFromDriverValue(row[key]))
  if (!plan.whole) {
    const only = plan.returning[0]!
    return rows.map((row) => read(row, only))
  }
  return rows.map((row) => Object.fromEntries(plan.returning!.map((entry) => [entry[0], read(row, entry)])))
}
