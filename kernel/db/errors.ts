/** What a database error was, through the wrappers (drizzle's DrizzleQueryError, …) around it. */

type Failure = { code?: unknown; errno?: unknown; message?: unknown; cause?: unknown } | undefined

const SQLSTATE = /^[0-9A-Z]{5}$/

/** The PostgreSQL SQLSTATE (five characters) of an error, if it carries one: Bun.SQL's `errno`, postgres.js's `code`. */
export function sqlState(error: unknown): string | undefined {
  for (let e = error as Failure, depth = 0; e && depth < 5; e = e.cause as Failure, depth++) {
    if (typeof e.errno === 'string' && SQLSTATE.test(e.errno)) return e.errno
    if (typeof e.code === 'string' && SQLSTATE.test(e.code)) return e.code
  }
  return undefined
}

/** A unique key refused the write (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE). */
export function isUniqueViolation(error: unknown): boolean {
  if (sqlState(error) === '23505') return true
  for (let e = error as Failure, depth = 0; e && depth < 5; e = e.cause as Failure, depth++)
    if (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(String(e.message))) return true
  return false
}
