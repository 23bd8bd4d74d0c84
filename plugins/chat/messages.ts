/**
 * Messages: send (stored before it is acknowledged, de-duplicated by (sender, clientId)), join
 * (every message after one), history, read markers.
 *
 * Order: every message takes the next `seq` of its conversation under the conversation row's
 * lock (one conditional update), so seq order is commit order in every process, and "every message
 * after X" is well defined. Ids are UUIDv7 as well, so they sort by creation time.
 */
import { and, asc, desc, eq, gt, inArray, lt, sql } from 'drizzle-orm'
import { isUniqueViolation } from '../../kernel/db/errors'
import { Conflict, Forbidden, Invalid, isAppError, NotFound } from '../../shared/errors'
import type { CannedResponses } from './canned'
import { type Actor, allowed, type ChatDeps, type ConversationRow, isAgentLike, isAllowed, type MessageRow, reopenIn, toMessageView } from './service'


/** Messages handed out by one join; `more` says that the client should join again from the last one. */
export const JOIN_PAGE = 500

/** A repeated clientId lost the race for the unique key: the transaction is undone, the first message returned. */
class DuplicateClientId extends Error {}
/** Something in a batch needs the one-by-one path (a refusal, a repeat): the batch is undone. */
class Unusual extends Error {}

/**
 * Sends written in one transaction at most. A commit's cost is mostly the index pages it dirties,
 * about two per message when few messages of a batch share a conversation; at 1,000 (200 before) a
 * saturated server's batches cover each conversation more than once and took about a third less
 * server CPU per message (4,000 was no better). The seq statement binds two values per
 * conversation: far below SQLite's limit of 32,766.
 */
const WRITE_BATCH = 1000

interface PendingSend {
  conversationId: string
  sender: Actor | string
  clientId: string
  body: string
  cannedId?: string
  resolve: (result: { message: MessageRow; fresh: boolean }) => void
  reject: (error: unknown) => void
}

export class MessageLog {
  private readonly queue: PendingSend[] = []
  private writing: Promise<void> | undefined

  constructor(
    private readonly d: ChatDeps,
    private readonly canned: CannedResponses,
  ) {}

  /**
   * Stores a message and returns it; the same (sender, clientId) again returns the first message.
   * A customer writing to a closed conversation reopens it; others get 409 CONVERSATION_CLOSED.
   * `cannedId` sends a canned response's body.
   */
  async send(
    actor: Actor,
    input: { conversationId: string; clientId: string; body?: string; cannedId?: string },
  ): Promise<{ message: MessageRow; fresh: boolean }> {
    const body = await this.bodyOf(actor, input)
    return this.store(input.conversationId, actor, input.clientId, body, input.cannedId)
  }

  /**
   * Stores a message from a user (`Actor`, whose access is checked) or an external sender of an
   * inbound channel (its customer id), in one transaction: take the next seq under the conversation
   * row's lock, check access and status on the row that update returned, insert the message (the
   * unique (sender, clientId) key settles repeats), announce it, and queue the delivery to the
   * channel when a non-customer writes in a channel conversation. A customer writing to a closed
   * conversation reopens it; anyone else gets 409 CONVERSATION_CLOSED.
   */
  store(conversationId: string, sender: Actor | string, clientId: string, body: string, cannedId?: string): Promise<{ message: MessageRow; fresh: boolean }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ conversationId, sender, clientId, body, cannedId, resolve, reject })
      // After the sends already read in this turn of the event loop, so they share a transaction.
      this.writing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.drain())
    })
  }

  /**
   * Group commit: the sends that arrive while a batch is being written go into the next one, which
   * is one transaction with one multi-row insert of messages and one of outbox events. Locks are
   * taken in conversation order (no deadlock between two processes' batches). Anything unusual in a
   * batch (a refusal, a repeated clientId) undoes it, and it is written again in halves, down to
   * one by one for the few sends around the unusual one.
   */
  private async drain() {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, WRITE_BATCH)
        if (batch.length === 1) await this.storeOne(batch[0])
        else await this.storeBatch(batch)
      }
    } finally {
      this.writing = undefined
    }
  }

  private async storeBatch(batch: PendingSend[]) {
    const { conversations, deliveries } = this.d.t
    const now = new Date()
    const ordered = [...batch].sort((a, b) => (a.conversationId < b.conversationId ? -1 : a.conversationId > b.conversationId ? 1 : 0))
    const reopened: ConversationRow[] = []
    let written: MessageRow[]
    let queued = false
    try {
      written = await this.d.db.transaction(async (tx) => {
        const rows: (MessageRow & { channel: string | null })[] = []
        const outbound: (typeof deliveries.$inferInsert)[] = []
        // One statement takes every conversation's seqs: last_seq + (its sends in this batch).
        const counts = new Map<string, number>()
        for (const p of ordered) counts.set(p.conversationId, (counts.get(p.conversationId) ?? 0) + 1)
        const ids = [...counts.keys()]
        const increment = sql.join([sql`case ${conversations.id}`, ...ids.map((id) => sql`when ${id} then ${sql.raw(String(counts.get(id)))}`), sql`end`], sql` `)
        const updated = await tx
          .update(conversations)
          .set({ lastSeq: sql`${conversations.lastSeq} + ${increment}`, lastMessageAt: now, updatedAt: now })
          .where(inArray(conversations.id, ids))
          // What the checks below read, not the whole row (six timestamps made into Dates per conversation).
          .returning({
            id: conversations.id,
            customerId: conversations.customerId,
            agentId: conversations.agentId,
            status: conversations.status,
            channel: conversations.channel,
            externalUserId: conversations.externalUserId,
            lastSeq: conversations.lastSeq,
          })
        const byId = new Map(updated.map((c) => [c.id, c]))
        const nextSeq = new Map(updated.map((c) => [c.id, c.lastSeq - counts.get(c.id)! + 1]))
        for (const p of ordered) {
          const senderId = typeof p.sender === 'string' ? p.sender : p.sender.id
          const c = byId.get(p.conversationId)
          if (!c || (typeof p.sender !== 'string' && !isAllowed(p.sender, c))) throw new Unusual()
          const isCustomer = c.customerId === senderId
          if (c.status === 'closed') {
            if (!isCustomer) throw new Unusual()
            const r = await reopenIn(this.d, tx, c.id, senderId)
            if (r) reopened.push(r)
          }
          const seq = nextSeq.get(c.id)!
          nextSeq.set(c.id, seq + 1)
          const id = Bun.randomUUIDv7()
          rows.push({ id, conversationId: c.id, seq, senderId, body: p.body, clientId: p.clientId, cannedId: p.cannedId ?? null, createdAt: now, channel: c.channel })
          if (c.channel && c.externalUserId && !isCustomer)
            outbound.push({ id: Bun.randomUUIDv7(), messageId: id, conversationId: c.id, channel: c.channel, externalUserId: c.externalUserId, body: p.body, nextAttemptAt: now, createdAt: now })
        }
        const inOrder: MessageRow[] = rows.map(({ channel, ...row }) => row)
        // A statement planned once (db.insertMany): drizzle building a 200-row insert cost more than SQLite running it.
        await this.insert(inOrder, Unusual)
        await this.d.publishAll(
          'chat.message.created',
          inOrder.map((m, i) => ({ message: toMessageView(m), channel: rows[i].channel })),
        )
        if (outbound.length) {
          await tx.insert(deliveries).values(outbound)
          queued = true
        }
        return inOrder
      })
    } catch (error) {
      if (!(error instanceof Unusual) && !isAppError(error)) {
        this.d.log.warn({ err: error }, 'a batch of messages failed; writing them one by one')
        for (const p of batch) await this.storeOne(p)
      } else if (batch.length <= 8) for (const p of batch) await this.storeOne(p)
      else {
        // In halves, in order: one repeat or refusal costs a few smaller batches, not a transaction per send.
        const half = batch.length >> 1
        await this.storeBatch(batch.slice(0, half))
        await this.storeBatch(batch.slice(half))
      }
      return
    }
    const notify = this.d.notify()
    for (const r of reopened) notify.updated(r)
    const results = new Map(ordered.map((p, i) => [p, written[i]]))
    for (const m of written) notify.message(m)
    for (const p of batch) p.resolve({ message: results.get(p)!, fresh: true })
    if (queued) this.d.deliveriesQueued()
    if (reopened.length) void this.d.assign()
  }

  private async storeOne(p: PendingSend): Promise<void> {
    await this.storeSingle(p.conversationId, p.sender, p.clientId, p.body, p.cannedId).then(p.resolve, p.reject)
  }

  private async storeSingle(conversationId: string, sender: Actor | string, clientId: string, body: string, cannedId?: string): Promise<{ message: MessageRow; fresh: boolean }> {
    const { conversations, deliveries } = this.d.t
    const senderId = typeof sender === 'string' ? sender : sender.id
    const now = new Date()
    let reopened: ConversationRow | undefined
    let queued = false
    try {
      const message = await this.d.db.transaction(async (tx) => {
        const [c] = await tx
          .update(conversations)
          .set({ lastSeq: sql`${conversations.lastSeq} + 1`, lastMessageAt: now, updatedAt: now })
          .where(eq(conversations.id, conversationId))
          .returning()
        if (typeof sender !== 'string') allowed(sender, conversationId, c)
        else if (!c) throw new NotFound(`no conversation ${conversationId}`, 'CONVERSATION_NOT_FOUND')
        const isCustomer = c.customerId === senderId
        if (c.status === 'closed') {
          if (!isCustomer) throw new Conflict('this conversation is closed; reopen it first', 'CONVERSATION_CLOSED')
          reopened = await reopenIn(this.d, tx, conversationId, senderId)
        }
        const m: MessageRow = { id: Bun.randomUUIDv7(), conversationId, seq: c.lastSeq, senderId, body, clientId, cannedId: cannedId ?? null, createdAt: now }
        await this.insert([m], DuplicateClientId)
        await this.d.publish('chat.message.created', { message: toMessageView(m), channel: c.channel })
        if (c.channel && c.externalUserId && !isCustomer) {
          await tx.insert(deliveries).values({
            id: Bun.randomUUIDv7(),
            messageId: m.id,
            conversationId,
            channel: c.channel,
            externalUserId: c.externalUserId,
            body,
            nextAttemptAt: now,
            createdAt: now,
          })
          queued = true
        }
        return m
      })
      const notify = this.d.notify()
      if (reopened) notify.updated(reopened)
      notify.message(message)
      if (queued) this.d.deliveriesQueued()
      if (reopened) void this.d.assign()
      return { message, fresh: true }
    } catch (error) {
      if (!(error instanceof DuplicateClientId) && !isAppError(error)) throw error
      // A repeat returns the first message, even if the conversation closed since.
      const first = await this.byClientId(senderId, clientId)
      if (first) return { message: this.sameConversation(first, conversationId), fresh: false }
      if (error instanceof DuplicateClientId) throw new Conflict('this clientId is being used by another request; retry', 'CLIENT_ID_IN_USE')
      throw error
    }
  }

  /**
   * Inserts the messages, or throws `repeated` when a unique key refuses one (a repeated clientId;
   * the caller's transaction is then undone). Not `on conflict do nothing … returning`: on SQLite
   * RETURNING costs more than the insert itself without it (3.6 → 5.7 µs per row).
   */
  private async insert(rows: MessageRow[], repeated: new () => Error) {
    try {
      await this.d.db.insertMany(this.d.t.messages, rows)
    } catch (error) {
      if (isUniqueViolation(error)) throw new repeated()
      throw error
    }
  }

  private sameConversation(m: MessageRow, conversationId: string) {
    if (m.conversationId !== conversationId) throw new Conflict('this clientId was used for a message in another conversation', 'CLIENT_ID_REUSED')
    return m
  }

  private async byClientId(senderId: string, clientId: string) {
    const { messages } = this.d.t
    const [m] = await this.d.db.read
      .select()
      .from(messages)
      .where(and(eq(messages.senderId, senderId), eq(messages.clientId, clientId)))
    return m
  }

  private async bodyOf(actor: Actor, input: { body?: string; cannedId?: string }): Promise<string> {
    if ((input.body === undefined) === (input.cannedId === undefined))
      throw new Invalid('send either body or cannedId', [{ path: '/body', message: 'exactly one of body and cannedId' }])
    if (input.cannedId === undefined) {
      if (!input.body!.trim()) throw new Invalid('body must not be empty', [{ path: '/body', message: 'empty' }])
      return input.body!
    }
    if (!isAgentLike(actor)) throw new Forbidden('only agents, managers and admins send canned responses')
    return (await this.canned.get(input.cannedId)).body
  }

  /**
   * Messages in ascending order: every one after the message `since` (up to `limit`; `more` says
   * there are others), or without `since` the latest `limit`.
   */
  async after(conversationId: string, since: string | undefined, limit = JOIN_PAGE): Promise<{ messages: MessageRow[]; more: boolean }> {
    const { messages } = this.d.t
    if (since === undefined) {
      const latest = await this.d.db.read.select().from(messages).where(eq(messages.conversationId, conversationId)).orderBy(desc(messages.seq)).limit(limit)
      return { messages: latest.reverse(), more: false }
    }
    const [mark] = await this.d.db.read
      .select({ seq: messages.seq })
      .from(messages)
      .where(and(eq(messages.id, since), eq(messages.conversationId, conversationId)))
    if (!mark) throw new NotFound(`no message ${since} in this conversation`, 'MESSAGE_NOT_FOUND')
    const rows = await this.d.db.read
      .select()
      .from(messages)
      .where(and(eq(messages.conversationId, conversationId), gt(messages.seq, mark.seq)))
      .orderBy(asc(messages.seq))
      .limit(limit + 1)
    return { messages: rows.slice(0, limit), more: rows.length > limit }
  }

  /** History, newest first; `beforeSeq` is the cursor. */
  history(conversationId: string, limit: number, beforeSeq?: number) {
    const { messages } = this.d.t
    return this.d.db.read
      .select()
      .from(messages)
      .where(and(eq(messages.conversationId, conversationId), beforeSeq !== undefined ? lt(messages.seq, beforeSeq) : undefined))
      .orderBy(desc(messages.seq))
      .limit(limit)
  }

  /** Moves the reader's marker forward to `messageId` (never back); returns the marker. */
  async markRead(actor: Actor, conversationId: string, messageId: string): Promise<{ messageId: string; seq: number }> {
    const { messages, readMarkers } = this.d.t
    const [m] = await this.d.db.read
      .select({ id: messages.id, seq: messages.seq })
      .from(messages)
      .where(and(eq(messages.id, messageId), eq(messages.conversationId, conversationId)))
    if (!m) throw new NotFound(`no message ${messageId} in this conversation`, 'MESSAGE_NOT_FOUND')
    const now = new Date()
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .insert(readMarkers)
        .values({ conversationId, userId: actor.id, messageId: m.id, seq: m.seq, at: now })
        .onConflictDoUpdate({
          target: [readMarkers.conversationId, readMarkers.userId],
          set: { messageId: m.id, seq: m.seq, at: now },
          setWhere: lt(readMarkers.seq, m.seq),
        })
        .returning(),
    )
    return row ? { messageId: row.messageId, seq: row.seq } : { messageId: m.id, seq: m.seq }
  }

  /** Every participant's read marker in a conversation. */
  readMarkers(conversationId: string) {
    const { readMarkers } = this.d.t
    return this.d.db.read.select().from(readMarkers).where(eq(readMarkers.conversationId, conversationId))
  }
}
