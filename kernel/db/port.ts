/**
 * The database port. Reads go through `read`; every write goes through `transaction`, which is
 * atomic on both dialects (a throw anywhere inside, even after an await, rolls everything back).
 * A transaction opened inside another one joins it.
 */
import type { PgDatabase, PgQueryResultHKT, PgTable } from 'drizzle-orm/pg-core'
import type { InsertManyOptions } from './bulk'
import type { Params, Preparable, Statement } from './prepared'
import type { Dialect } from './schema'

/** A drizzle database, typed as PostgreSQL; at run time it may be bun:sqlite (see schema.ts). */
export type Db = PgDatabase<PgQueryResultHKT, Record<string, never>>
/** What may be done outside a transaction: reading. */
export type Reader = Pick<Db, 'select' | 'selectDistinct' | '$count' | '$with' | 'with'>

export interface Database {
  readonly dialect: Dialect
  readonly read: Reader
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>
  /**
   * Inserts many rows of one table with a statement planned once (see bulk.ts): for hot paths.
   * Joins the surrounding transaction (or runs in its own). With `returning`, gives that
   * property (`*`: the whole row) of each row actually written (rows skipped by
   * `onConflictDoNothing`, or refused by `onConflictDoUpdate`'s `where`, give nothing).
   */
  insertMany<T extends PgTable>(table: T, rows: T['$inferInsert'][], options: Omit<InsertManyOptions, 'returning'> & { returning: '*' }): Promise<T['$inferSelect'][]>
  insertMany<T extends PgTable, K extends keyof T['$inferSelect'] & string = never>(
    table: T,
    rows: T['$inferInsert'][],
    options?: Omit<InsertManyOptions, 'returning'> & { returning?: K },
  ): Promise<T['$inferSelect'][K][]>
  /**
   * A statement built once (see prepared.ts), for hot paths: `build` writes it on the given
   * database with `p(name)` for its values. The result runs it on `db.read` or on a transaction's
   * `tx`, the same way on both dialects (PostgreSQL builds a transaction's statements on its own
   * connection; SQLite, one connection for every transaction, builds each statement once).
   */
  prepare<V extends Record<string, unknown>, R>(name: string, build: (db: Db, p: Params<V>) => Preparable<R>): Statement<V, R>
  /** Runs `fn` once the surrounding transaction has committed; at once when there is none. */
  afterCommit(fn: () => void): void
  /** Applies the drizzle-kit migrations in `folder`, recording them in `table`. */
  migrate(folder: string, table: string): Promise<void>
  ping(): Promise<void>
  close(): Promise<void>
}
