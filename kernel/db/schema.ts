/**
 * One table definition for both dialects. A plugin writes `table('auth_users', (c) => ({...}))`
 * once; the kernel materialises it as a `pg-core` or `sqlite-core` table for the active database.
 * Tables are typed as PostgreSQL tables, and queries keep to the subset both dialects share
 * (select/where, insert … returning, update with `sql` expressions, onConflictDo*, delete).
 */
import type { SQL } from 'bun'
import type { BuildColumns } from 'drizzle-orm'
import * as pg from 'drizzle-orm/pg-core'
import * as lite from 'drizzle-orm/sqlite-core'

export type Dialect = 'sqlite' | 'postgres'

/**
 * jsonb on PostgreSQL. Bun.SQL writes a value bound to a jsonb parameter as JSON itself, so the
 * value goes to it as it is (drizzle's own jsonb would send JSON text, stored as a JSON string);
 * numbers and booleans, which Bun would bind as SQL numbers, go wrapped by `sql.json`, which
 * needs no connection (Bun.SQL as a global: drizzle-kit loads this file under Node). Read back, Bun has parsed it already.
 */
let jsonHelper: SQL | undefined
const jsonColumn = pg.customType<{ data: unknown; driverData: unknown }>({
  dataType: () => 'jsonb',
  toDriver: (value) => (typeof value === 'object' || typeof value === 'string' ? value : (jsonHelper ??= new Bun.SQL('postgres://localhost')).json(value)),
  fromDriver: (value) => value,
})

const pgColumns = {
  /** Text primary key; ids are UUIDv7 so they sort by creation time. */
  id: (name = 'id') => pg.text(name).primaryKey(),
  text: (name: string) => pg.text(name),
  integer: (name: string) => pg.integer(name),
  /** 64-bit integer read as a JS number (money in minor units, counters). */
  bigint: (name: string) => pg.bigint(name, { mode: 'number' }),
  boolean: (name: string) => pg.boolean(name),
  /** Millisecond-precision instant, read as a Date. */
  timestamp: (name: string) => pg.timestamp(name, { mode: 'date', withTimezone: true, precision: 3 }),
  json: <T>(name: string) => jsonColumn(name).$type<T>(),
  index: (name: string) => pg.index(name),
  uniqueIndex: (name: string) => pg.uniqueIndex(name),
  primaryKey: pg.primaryKey,
}

export type Columns = typeof pgColumns

const sqliteColumns = {
  id: (name = 'id') => lite.text(name).primaryKey(),
  text: (name: string) => lite.text(name),
  integer: (name: string) => lite.integer(name),
  bigint: (name: string) => lite.integer(name),
  boolean: (name: string) => lite.integer(name, { mode: 'boolean' }),
  timestamp: (name: string) => lite.integer(name, { mode: 'timestamp_ms' }),
  json: (name: string) => lite.text(name, { mode: 'json' }),
  index: (name: string) => lite.index(name),
  uniqueIndex: (name: string) => lite.uniqueIndex(name),
  primaryKey: lite.primaryKey,
} as unknown as Columns

type PgExtra<C extends Record<string, pg.PgColumnBuilderBase>> = (
  t: pg.PgTableWithColumns<pg.TableConfig & { columns: BuildColumns<string, C, 'pg'> }>,
) => pg.PgTableExtraConfigValue[]

export interface TableDef<T> {
  readonly name: string
  materialize(dialect: Dialect): T
}

/** Declares a table once; `materialize` builds it for a dialect (cached per dialect). */
export function table<Name extends string, C extends Record<string, pg.PgColumnBuilderBase>>(
  name: Name,
  columns: (c: Columns) => C,
  extra?: (c: Columns) => PgExtra<C>,
): TableDef<pg.PgTableWithColumns<{ name: Name; schema: undefined; columns: BuildColumns<Name, C, 'pg'>; dialect: 'pg' }>> {
  const built = new Map<Dialect, any>()
  return {
    name,
    materialize(dialect) {
      if (!built.has(dialect)) {
        const c = dialect === 'postgres' ? pgColumns : sqliteColumns
        const make = (dialect === 'postgres' ? pg.pgTable : lite.sqliteTable) as any
        built.set(dialect, make(name, columns(c), extra ? extra(c) : undefined))
      }
      return built.get(dialect)
    },
  }
}

export type Schema = Record<string, TableDef<unknown>>
export type Tables<S extends Schema> = { [K in keyof S]: S[K] extends TableDef<infer T> ? T : never }

export function materialize<S extends Schema>(schema: S, dialect: Dialect): Tables<S> {
  return Object.fromEntries(Object.entries(schema).map(([k, def]) => [k, def.materialize(dialect)])) as Tables<S>
}
