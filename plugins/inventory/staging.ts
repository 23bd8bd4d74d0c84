/**
 * SQLite's staged half of the ingest path (schema.ts, `movementsRecent`): a small ingest batch
 * appends its readings and movements to the recent tables, in the part their key hashes to, and
 * every MOVE_EVERY_MS one part is moved whole into the indexed tables, in index order, then
 * deleted. Batches move the part that is due inside their own transaction (the pages they change
 * are written to the log once for both); when batches stop coming, a timer moves the rest. Reads
 * take the indexed table and the recent one together, in one statement (`newestFirst`).
 * PostgreSQL does not stage: it logs changed rows, not pages, and staging only added work there.
 */
import { desc, getTableColumns, type SQL, sql } from 'drizzle-orm'
import type { PgTable } from 'drizzle-orm/pg-core'
import type { Database, Db, Reader, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { InventorySchema } from './schema'

/**
 * Parts per recent table. A part moved holds STAGED_PARTS × MOVE_EVERY_MS (a second) of its keys'
 * rows, a few to each index page it changes; more parts would mean fewer rows each.
 */
const STAGED_PARTS = 10
/** One part is moved this often. */
const MOVE_EVERY_MS = 100
/** After the last rows were staged (or the start), the timer goes on this long: every part is moved twice over. */
const IDLE_MOVES_MS = 2 * STAGED_PARTS * MOVE_EVERY_MS

/** The part a key's rows are staged in: the device for readings, the level (levelKey) for movements. */
export const partOf = (key: string) => Bun.hash.crc32(key) % STAGED_PARTS

/** An indexed table and its recent one, with the fixed parts of the statements that move a part. */
interface Pair {
  main: PgTable
  recent: PgTable
  /** The indexed table's columns, as a list. */
  names: SQL
  /** Its index order. */
  ordered: SQL
}

const pair = (main: PgTable, recent: PgTable, order: string[]): Pair => ({
  main,
  recent,
  names: sql.join(
    Object.values(getTableColumns(main)).map((c) => sql.identifier(c.name)),
    sql`, `,
  ),
  ordered: sql.join(
    order.map((c) => sql.identifier(c)),
    sql`, `,
  ),
})

/**
 * The first `limit` rows by `key`, descending, of an indexed table and its recent one together
 * (`where` is given each, and whether it is the recent one): each side from its own index, then
 * merged, in one statement, so that a part being moved is seen on one side, never on both or neither.
 */
export function newestFirst<T extends PgTable>(
  read: Reader,
  main: T,
  recent: PgTable,
  where: (t: T, staged: boolean) => SQL | undefined,
  key: keyof T['_']['columns'] & string,
  limit: number,
): Promise<T['$inferSelect'][]> {
  const columns = getTableColumns(main)
  const side = (t: T, alias: string) => {
    const c = t as unknown as Record<string, SQL>
    const fields = Object.fromEntries(Object.keys(columns).map((k) => [k, c[k]!]))
    return read
      .select(fields)
      .from(t as PgTable)
      .where(where(t, t !== main))
      .orderBy(desc(c[key]!))
      .limit(limit)
      .as(alias)
  }
  const name = sql.identifier(columns[key]!.name)
  return read
    .select()
    .from(side(main, 'stored'))
    .unionAll(read.select().from(side(recent as unknown as T, 'staged')))
    .orderBy(desc(sql`${name}`))
    .limit(limit) as unknown as Promise<T['$inferSelect'][]>
}

export class Staging {
  private next = 0
  private lastMove = -Infinity
  /** Until when the timer moves parts. */
  private idleUntil = 0
  private timer?: ReturnType<typeof setInterval>
  private moving?: Promise<unknown>
  private readonly pairs: Pair[]

  constructor(
    private readonly db: Database,
    t: Tables<InventorySchema>,
    private readonly log: PluginContext['log'],
  ) {
    this.pairs = [pair(t.readings, t.readingsRecent, ['device_id', 'seq']), pair(t.movements, t.movementsRecent, ['sku', 'warehouse', 'id'])]
  }

  /** Inside a batch's transaction: moves the part whose turn has come, if one has and rows were staged lately. */
  async moveDue(tx: Db) {
    if (this.due() && performance.now() <= this.idleUntil) await this.move(tx, this.take())
  }

  /** Rows were staged: parts are moved for a while, by the batches or, once they stop, the timer. */
  staged() {
    this.idleUntil = performance.now() + IDLE_MOVES_MS
  }

  /** Moves parts while no batch does: rows left by an earlier run first, then after each burst of batches. `busy`: a batch is in flight. */
  start(busy: () => boolean) {
    this.staged()
    this.timer = setInterval(() => {
      if (this.moving || busy() || !this.due() || performance.now() > this.idleUntil) return
      const part = this.take()
      this.moving = this.db
        .transaction((tx) => this.move(tx, part))
        .catch((error) => this.log.error({ err: error, part }, 'moving staged rows failed; the part is tried again on its next turn'))
        .finally(() => (this.moving = undefined))
    }, MOVE_EVERY_MS)
    this.timer.unref?.()
  }

  async stop() {
    clearInterval(this.timer)
    await this.moving
  }

  private due() {
    return performance.now() - this.lastMove >= MOVE_EVERY_MS
  }

  private take() {
    this.lastMove = performance.now()
    const part = this.next
    this.next = (part + 1) % STAGED_PARTS
    return part
  }

  /** One part of each recent table into its indexed table (SQLite: one writer, so nobody moves it meanwhile). */
  private async move(tx: Db, part: number) {
    const run = (q: SQL) => (tx as unknown as { run(q: SQL): Promise<unknown> }).run(q)
    for (const { main, recent, names, ordered } of this.pairs) {
      const inPart = sql`${sql.identifier('part')} = ${part}`
      await run(sql`insert into ${main} (${names}) select ${names} from ${recent} where ${inPart} order by ${ordered}`)
      await run(sql`delete from ${recent} where ${inPart}`)
    }
  }
}
