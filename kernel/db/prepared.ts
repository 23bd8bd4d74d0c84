/**
 * Statements built once and run many times with other values, for hot paths: drizzle builds a
 * statement's SQL text anew on every run, which costs more than SQLite running it. A statement is
 * written as usual, with `p(name)` where a value goes (`p(name, column)` in a condition, so the
 * value is stored as that column stores it: a Date as SQLite's milliseconds).
 */
import { type Column, type Placeholder, type SQL, sql } from 'drizzle-orm'
import type { Db, Reader } from './port'
import type { Dialect } from './schema'

/** Names the values of a statement. */
export interface Params<V extends Record<string, unknown>> {
  <K extends keyof V & string>(name: K): Placeholder<K, V[K]>
  <K extends keyof V & string>(name: K, column: Column): SQL<V[K]>
}

/** What can be prepared: a drizzle select, insert, update or delete. */
export interface Preparable<R> {
  prepare(name: string): { execute(values?: Record<string, unknown>): Promise<R> }
}

/**
 * Runs the statement on `on`: `db.read` (outside any transaction) or the `tx` of the transaction
 * it belongs to.
 */
export type Statement<V extends Record<string, unknown>, R> = (on: Db | Reader, values: V) => Promise<R>

export const params = ((name: string, column?: Column) =>
  column ? sql`${sql.param(sql.placeholder(name), column)}` : sql.placeholder(name)) as Params<never>

/**
 * `column` is one of the strings of a JSON array bound as one value (`JSON.stringify(list)`): a
 * prepared statement then takes a list of any length. On PostgreSQL the list becomes an array the
 * column is compared with (`= any(array(…))`), which an index serves: written as `in (select …)`
 * the planner took the list for a hundred rows of unknown values and scanned the whole table
 * (60,000 rows) to hash-join it. (It casts through `text`: Bun.SQL binds a string given to a
 * jsonb parameter as a JSON string, not the array.)
 */
export const inListed = (dialect: Dialect, column: Column | SQL, list: SQL) =>
  dialect === 'sqlite'
    ? sql`${column} in (select value from json_each(${list}))`
    : sql`${column} = any(array(select jsonb_array_elements_text(${list}::text::jsonb)))`
