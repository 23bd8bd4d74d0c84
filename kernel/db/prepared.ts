/**
 * Statements built once and run many times with other values, for hot paths: drizzle builds a
 * statement's SQL text anew on every run, which costs more than SQLite running it. A statement is
 * written as usual, with `p(name)` where a value goes (`p(name, column)` in a condition, so the
 * value is stored as that column stores it: a Date as SQLite's milliseconds).
 */
import { type Column, type Placeholder, type SQL, sql } from 'drizzle-orm'
import type { Db, Reader } from './port'

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
