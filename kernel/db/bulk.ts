/**
 * Many rows into one table, for hot paths (sensor readings, ledger movements, outbox records),
 * where building a multi-row statement through drizzle costs more than the write itself. The
 * statement is planned once per table, column set and options from the table's own definition, and
 * only the values change: PostgreSQL binds one array per column (`insert … select * from unnest(…)`:
 * the same short statement for any number of rows), SQLite runs one compiled single-row statement
 * per row (cheap there: no round trips).
 */
import { type Column, getTableColumns, getTableName, type Table } from 'drizzle-orm'

export interface InsertManyOptions {
  /** Skip rows that break a unique key instead of failing. */
  onConflictDoNothing?: boolean
  /** A property of the table: the call returns its value for each row actually inserted. */
  returning?: string
}

export interface BulkPlan {
  /** Statement text, with `$1::<type>[]` (PostgreSQL) or `?` (SQLite) placeholders. */
  text: string
  columns: Column[]
  /** Row property read for each column. */
  keys: string[]
  /** The column named by `returning`, to read its values back. */
  returning?: Column
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/**
 * The columns are those any row gives a value for (the others take their defaults); a column given
 * in some rows only is NULL where a row leaves it out.
 */
export function planInsert(dialect: 'postgres' | 'sqlite', table: Table, rows: readonly Record<string, unknown>[], options: InsertManyOptions, cache: Map<string, BulkPlan>): BulkPlan {
  const present = new Set<string>()
  for (const row of rows) for (const key in row) if (row[key] !== undefined) present.add(key)
  const all = getTableColumns(table)
  const keys = Object.keys(all).filter((k) => present.has(k))
  const cacheKey = `${getTableName(table)}|${keys.join(',')}|${options.onConflictDoNothing ? 1 : 0}|${options.returning ?? ''}`
  const cached = cache.get(cacheKey)
  if (cached) return cached
  const columns = keys.map((k) => all[k]!)
  const returningColumn = options.returning === undefined ? undefined : all[options.returning]
  if (options.returning !== undefined && !returningColumn) throw new Error(`insertMany: ${getTableName(table)} has no column ${options.returning}`)
  const values =
    dialect === 'postgres'
      ? `select * from unnest(${columns.map((c, i) => `$${i + 1}::${c.getSQLType()}[]`).join(', ')})`
      : `values (${columns.map(() => '?').join(', ')})`
  const text =
    `insert into ${quote(getTableName(table))} (${columns.map((c) => quote(c.name)).join(', ')}) ${values}` +
    (options.onConflictDoNothing ? ' on conflict do nothing' : '') +
    (returningColumn ? ` returning ${quote(returningColumn.name)} as "r"` : '')
  const plan: BulkPlan = { text, columns, keys, returning: returningColumn }
  cache.set(cacheKey, plan)
  return plan
}

/** A row's value for a column, as the driver takes it (Date → ms or ISO text, JSON → text, …). */
export function driverValue(column: Column, value: unknown): unknown {
  return value === undefined || value === null ? null : column.mapToDriverValue(value)
}

/** The returned values, read back as the table defines them. */
export function returned(plan: BulkPlan, rows: readonly { r: unknown }[]): unknown[] {
  const column = plan.returning
  return column ? rows.map((row) => (row.r === null ? null : column.mapFromDriverValue(row.r))) : []
}
