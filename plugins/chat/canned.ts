/** Canned responses: short, shared answers agents send by id (CRUD over REST, `cannedId` in sends). */
import { asc, eq, gt } from 'drizzle-orm'
import type { Database, Tables } from '../../kernel/db'
import { Conflict, NotFound } from '../../shared/errors'
import type { ChatSchema } from './schema'
import { isUniqueViolation } from '../../kernel/db/errors'
import type { Actor } from './service'

type T = Tables<ChatSchema>
export type CannedRow = T['cannedResponses']['$inferSelect']

export const toCannedView = (c: CannedRow) => ({
  id: c.id,
  shortcut: c.shortcut,
  title: c.title,
  body: c.body,
  createdBy: c.createdBy,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
})

export class CannedResponses {
  constructor(private readonly d: { db: Database; t: T }) {}

  async get(id: string): Promise<CannedRow> {
    const { cannedResponses } = this.d.t
    const [row] = await this.d.db.read.select().from(cannedResponses).where(eq(cannedResponses.id, id))
    if (!row) throw new NotFound(`no canned response ${id}`, 'CANNED_RESPONSE_NOT_FOUND')
    return row
  }

  list(limit: number, after?: string) {
    const { cannedResponses } = this.d.t
    return this.d.db.read
      .select()
      .from(cannedResponses)
      .where(after ? gt(cannedResponses.shortcut, after) : undefined)
      .orderBy(asc(cannedResponses.shortcut))
      .limit(limit)
  }

  async create(actor: Actor, input: { shortcut: string; title: string; body: string }): Promise<CannedRow> {
    const { cannedResponses } = this.d.t
    const now = new Date()
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(cannedResponses)
        .values({ id: Bun.randomUUIDv7(), ...input, createdBy: actor.id, createdAt: now, updatedAt: now })
        .onConflictDoNothing()
        .returning(),
    )
    if (!row) throw new Conflict(`a canned response with shortcut ${input.shortcut} exists`, 'SHORTCUT_TAKEN')
    return row
  }

  async update(id: string, input: { shortcut?: string; title?: string; body?: string }): Promise<CannedRow> {
    const { cannedResponses } = this.d.t
    await this.get(id)
    try {
      const [row] = await this.d.db.transaction((tx) =>
        tx.update(cannedResponses).set({ ...input, updatedAt: new Date() }).where(eq(cannedResponses.id, id)).returning(),
      )
      if (!row) throw new NotFound(`no canned response ${id}`, 'CANNED_RESPONSE_NOT_FOUND')
      return row
    } catch (error) {
      if (isUniqueViolation(error)) throw new Conflict(`a canned response with shortcut ${input.shortcut} exists`, 'SHORTCUT_TAKEN')
      throw error
    }
  }

  async delete(id: string): Promise<void> {
    const { cannedResponses } = this.d.t
    const [row] = await this.d.db.transaction((tx) => tx.delete(cannedResponses).where(eq(cannedResponses.id, id)).returning())
    if (!row) throw new NotFound(`no canned response ${id}`, 'CANNED_RESPONSE_NOT_FOUND')
  }
}
