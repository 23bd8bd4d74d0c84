import type { Database } from './port'
import { openPostgres } from './postgres'
import { openSqlite } from './sqlite'

export function openDatabase(url: string, options: { poolSize?: number } = {}): Database {
  return url.startsWith('sqlite:') ? openSqlite(url) : openPostgres(url, { max: options.poolSize })
}

export type { Database, Db, Reader } from './port'
export type { Params, Statement } from './prepared'
export { inListed } from './prepared'
export { table, materialize, type Dialect, type Schema, type Tables } from './schema'
