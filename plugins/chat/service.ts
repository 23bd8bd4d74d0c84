/**
 * Conversations and messages: start, join (history after a message), send (stored before it is
 * acknowledged, de-duplicated by (sender, clientId)), read markers, close and reopen, canned
 * responses. No HTTP or sockets here: routes.ts and sockets.ts translate requests into these calls,
 * and tell participants what changed through `Notify` once a transaction has committed.
 *
 * Order: every message takes the next `seq` of its conversation under the conversation row's
 * lock (one conditional update), so seq order is commit order in every process, and "every message
 * after X" is well defined. Ids are UUIDv7 as well, so they sort by creation time.
 */
import { and, asc, desc, eq, gt, inArray, lt, sql } from 'drizzle-orm'
import type { Database, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import type { PluginContext } from '../../kernel/plugin'
import type { Conversation, ConversationStatus, Message } from '../../shared/contracts/chat'
import { Conflict, Forbidden, Invalid, isAppError, NotFound } from '../../shared/errors'
import type { ChatSchema } from './schema'

type T = Tables<ChatSchema>
export type ConversationRow = T['conversations']['$inferSelect']
export type MessageRow = T['messages']['$inferSelect']
export type CannedRow = T['cannedResponses']['$inferSelect']
type Publish = PluginContext['events']['publish']

/** Who is acting: a signed-in user (HTTP principal or socket user). */
export interface Actor {
  id: string
  roles: readonly string[]
}

export const STAFF = ['manager', 'admin'] as const
export const AGENTS = ['agent', 'manager', 'admin'] as const
const isStaff = (a: Actor) => a.roles.some((r) => (STAFF as readonly string[]).includes(r))
export const isAgentLike = (a: Actor) => a.roles.some((r) => (AGENTS as readonly string[]).includes(r))

/** Messages handed out by one join; `more` says that the client should join again from the last one. */
export const JOIN_PAGE = 500

export const toMessageView = (m: MessageRow): Message => ({
  id: m.id,
  conversationId: m.conversationId,
  senderId: m.senderId,
  body: m.body,
  createdAt: m.createdAt.toISOString(),
  clientId: m.clientId,
  seq: m.seq,
})

const iso = (d: Date | null) => (d ? d.toISOString() : null)
export const toConversationView = (c: ConversationRow): Conversation => ({
  id: c.id,
  customerId: c.customerId,
  agentId: c.agentId,
  status: c.status as ConversationStatus,
  subject: c.subject,
  channel: c.channel,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
  assignedAt: iso(c.assignedAt),
  closedAt: iso(c.closedAt),
  lastMessageAt: iso(c.lastMessageAt),
})

export const toCannedView = (c: CannedRow) => ({
  id: c.id,
  shortcut: c.shortcut,
  title: c.title,
  body: c.body,
  createdBy: c.createdBy,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
})

/** What participants are told after a commit (sockets.ts emits it; a no-op without realtime). */
export interface Notify {
  message(message: MessageRow): void
  /** the conversation changed (assigned, handed back, reopened): its room hears conversation:updated */
  updated(conversation: ConversationRow): void
  assigned(conversation: ConversationRow): void
  closed(conversation: ConversationRow): void
  presence(userId: string, status: 'online' | 'away' | 'offline'): void
}

export const silent: Notify = { message() {}, updated() {}, assigned() {}, closed() {}, presence() {} }

export interface ChatDeps {
  db: Database
  t: T
  publish: Publish
  publishAll: PluginContext['events']['publishAll']
  log: Logger
  /** Nudges the assigner; resolves when a pass that began after the call has finished. */
  assign: () => Promise<void>
  /** Called after a commit that queued a delivery to an inbound channel. */
  deliveriesQueued: () => void
  notify: () => Notify
}

/** A repeated clientId lost the race for the unique key: the transaction is undone, the first message returned. */
class DuplicateClientId extends Error {}
/** Something in a batch needs the one-by-one path (a refusal, a repeat): the batch is undone. */
class Unusual extends Error {}

/** Sends written in one transaction at most. */
const WRITE_BATCH = 200

interface PendingSend {
  conversationId: string
  sender: Actor | string
  clientId: string
  body: string
  cannedId?: string
  resolve: (result: { message: MessageRow; fresh: boolean }) => void
  reject: (error: unknown) => void
}

export class ChatService {
  private readonly queue: PendingSend[] = []
  private writing: Promise<void> | undefined

  constructor(private readonly d: ChatDeps) {}

  // ---------------------------------------------------------------------------------------------
  // conversations
  // ---------------------------------------------------------------------------------------------

  /** A customer opens a conversation; it is assigned at once when an agent has room, else queued. */
  async start(actor: Actor, subject?: string): Promise<ConversationRow> {
    const { conversations } = this.d.t
    const now = new Date()
    const row = await this.d.db.transaction(async (tx) => {
      const [c] = await tx
        .insert(conversations)
        .values({ id: Bun.randomUUIDv7(), customerId: actor.id, status: 'open', subject: subject?.trim() || null, queuedAt: now, createdAt: now, updatedAt: now })
        .returning()
      await this.d.publish('chat.conversation.opened', { conversation: toConversationView(c), reason: 'started' })
      return c
    })
    await this.d.assign()
    return (await this.find(row.id)) ?? row
  }

  async find(id: string): Promise<ConversationRow | undefined> {
    const { conversations } = this.d.t
    const [row] = await this.d.db.read.select().from(conversations).where(eq(conversations.id, id))
    return row
  }

  /** The conversation, if `actor` may see it: its customer, its agent, managers and admins. */
  async visible(actor: Actor, id: string): Promise<ConversationRow> {
    return allowed(actor, id, await this.find(id))
  }

  list(actor: Actor, filter: { status?: ConversationStatus; agentId?: string }, limit: number, before?: string) {
    const { conversations } = this.d.t
    return this.d.db.read
      .select()
      .from(conversations)
      .where(
        and(
          isAgentLike(actor) ? undefined : eq(conversations.customerId, actor.id),
          filter.status ? eq(conversations.status, filter.status) : undefined,
          filter.agentId ? eq(conversations.agentId, filter.agentId) : undefined,
          before ? lt(conversations.id, before) : undefined,
        ),
      )
      .orderBy(desc(conversations.id))
      .limit(limit)
  }

  /** Closes a conversation (its agent, a manager or an admin); the agent's capacity frees up. */
  async close(actor: Actor, id: string): Promise<ConversationRow> {
    const c = await this.visible(actor, id)
    if (!isAgentLike(actor)) throw new Forbidden('only agents, managers and admins close conversations', 'FORBIDDEN')
    if (c.status === 'closed') return c
    const { conversations, agents } = this.d.t
    const now = new Date()
    const closed = await this.d.db.transaction(async (tx) => {
      const [row] = await tx
        .update(conversations)
        .set({ status: 'closed', closedAt: now, updatedAt: now })
        .where(and(eq(conversations.id, id), inArray(conversations.status, ['open', 'assigned'])))
        .returning()
      if (!row) return undefined
      if (c.status === 'assigned' && row.agentId)
        await tx.update(agents).set({ load: sql`${agents.load} - 1` }).where(and(eq(agents.userId, row.agentId), gt(agents.load, 0)))
      await this.d.publish('chat.conversation.closed', { conversation: toConversationView(row), closedBy: actor.id })
      return row
    })
    if (!closed) return (await this.find(id)) ?? c
    this.d.notify().closed(closed)
    void this.d.assign()
    return closed
  }

  /** Opens a closed conversation again and queues it for an agent. */
  async reopen(actor: Actor, id: string): Promise<ConversationRow> {
    const c = await this.visible(actor, id)
    if (c.status !== 'closed') return c
    const reopened = await this.d.db.transaction((tx) => this.reopenIn(tx, id, actor.id))
    if (reopened) {
      this.d.notify().updated(reopened)
      await this.d.assign()
    }
    return (await this.find(id)) ?? c
  }

  private async reopenIn(tx: Parameters<Parameters<Database['transaction']>[0]>[0], id: string, by: string) {
    const { conversations } = this.d.t
    const now = new Date()
    const [row] = await tx
      .update(conversations)
      .set({ status: 'open', agentId: null, assignedAt: null, closedAt: null, queuedAt: now, updatedAt: now })
      .where(and(eq(conversations.id, id), eq(conversations.status, 'closed')))
      .returning()
    if (row) await this.d.publish('chat.conversation.reopened', { conversation: toConversationView(row), reopenedBy: by })
    return row
  }

  /**
   * Messages that came in through a channel: one conversation per external sender (reopened when
   * closed), each message de-duplicated by the channel's message id. Returns how many were new.
   */
  async receive(channel: string, inbound: { from: string; id: string; text: string }[]): Promise<number> {
    let stored = 0
    for (const item of inbound) {
      const senderId = externalSender(channel, item.from)
      const conversation = await this.externalConversation(channel, item.from, senderId)
      const { fresh } = await this.store(conversation.id, senderId, item.id, item.text.slice(0, 4000))
      if (fresh) stored++
    }
    return stored
  }

  private async externalConversation(channel: string, externalUserId: string, customerId: string): Promise<ConversationRow> {
    const { conversations } = this.d.t
    const find = async () =>
      (await this.d.db.read
        .select()
        .from(conversations)
        .where(and(eq(conversations.channel, channel), eq(conversations.externalUserId, externalUserId))))[0]
    const existing = await find()
    if (existing) return existing
    const now = new Date()
    const created = await this.d.db.transaction(async (tx) => {
      const [c] = await tx
        .insert(conversations)
        .values({ id: Bun.randomUUIDv7(), customerId, status: 'open', subject: null, channel, externalUserId, queuedAt: now, createdAt: now, updatedAt: now })
        .onConflictDoNothing()
        .returning()
      if (c) await this.d.publish('chat.conversation.opened', { conversation: toConversationView(c), reason: 'inbound' })
      return c
    })
    if (created) void this.d.assign()
    const row = created ?? (await find())
    if (!row) throw new Conflict('the conversation of this sender is being created; retry', 'CONVERSATION_IN_PROGRESS')
    return row
  }

  // ---------------------------------------------------------------------------------------------
  // messages
  // ---------------------------------------------------------------------------------------------

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
   * batch (a refusal, a repeated clientId) undoes it, and its sends are then written one by one.
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
    const { conversations, messages, deliveries } = this.d.t
    const now = new Date()
    const ordered = [...batch].sort((a, b) => (a.conversationId < b.conversationId ? -1 : a.conversationId > b.conversationId ? 1 : 0))
    const reopened: ConversationRow[] = []
    let written: MessageRow[]
    let queued = false
    try {
      written = await this.d.db.transaction(async (tx) => {
        const rows: (typeof messages.$inferInsert & { channel: string | null })[] = []
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
          .returning()
        const byId = new Map(updated.map((c) => [c.id, c]))
        const nextSeq = new Map(updated.map((c) => [c.id, c.lastSeq - counts.get(c.id)! + 1]))
        for (const p of ordered) {
          const senderId = typeof p.sender === 'string' ? p.sender : p.sender.id
          const c = byId.get(p.conversationId)
          if (!c || (typeof p.sender !== 'string' && !isAllowed(p.sender, c))) throw new Unusual()
          const isCustomer = c.customerId === senderId
          if (c.status === 'closed') {
            if (!isCustomer) throw new Unusual()
            const r = await this.reopenIn(tx, c.id, senderId)
            if (r) reopened.push(r)
          }
          const seq = nextSeq.get(c.id)!
          nextSeq.set(c.id, seq + 1)
          const id = Bun.randomUUIDv7()
          rows.push({ id, conversationId: c.id, seq, senderId, body: p.body, clientId: p.clientId, cannedId: p.cannedId ?? null, createdAt: now, channel: c.channel })
          if (c.channel && c.externalUserId && !isCustomer)
            outbound.push({ id: Bun.randomUUIDv7(), messageId: id, conversationId: c.id, channel: c.channel, externalUserId: c.externalUserId, body: p.body, nextAttemptAt: now, createdAt: now })
        }
        const inserted = await tx
          .insert(messages)
          .values(rows.map(({ channel, ...row }) => row))
          .onConflictDoNothing()
          .returning()
        if (inserted.length !== rows.length) throw new Unusual()
        const insertedById = new Map(inserted.map((m) => [m.id, m]))
        const inOrder = rows.map((r) => insertedById.get(r.id!)!)
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
      if (!(error instanceof Unusual) && !isAppError(error)) this.d.log.warn({ err: error }, 'a batch of messages failed; writing them one by one')
      for (const p of batch) await this.storeOne(p)
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
    const { conversations, messages, deliveries } = this.d.t
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
          reopened = await this.reopenIn(tx, conversationId, senderId)
        }
        const [m] = await tx
          .insert(messages)
          .values({ id: Bun.randomUUIDv7(), conversationId, seq: c.lastSeq, senderId, body, clientId, cannedId: cannedId ?? null, createdAt: now })
          .onConflictDoNothing()
          .returning()
        if (!m) throw new DuplicateClientId()
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
    return (await this.canned(input.cannedId)).body
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

  // ---------------------------------------------------------------------------------------------
  // canned responses
  // ---------------------------------------------------------------------------------------------

  async canned(id: string): Promise<CannedRow> {
    const { cannedResponses } = this.d.t
    const [row] = await this.d.db.read.select().from(cannedResponses).where(eq(cannedResponses.id, id))
    if (!row) throw new NotFound(`no canned response ${id}`, 'CANNED_RESPONSE_NOT_FOUND')
    return row
  }

  listCanned(limit: number, after?: string) {
    const { cannedResponses } = this.d.t
    return this.d.db.read
      .select()
      .from(cannedResponses)
      .where(after ? gt(cannedResponses.shortcut, after) : undefined)
      .orderBy(asc(cannedResponses.shortcut))
      .limit(limit)
  }

  async createCanned(actor: Actor, input: { shortcut: string; title: string; body: string }): Promise<CannedRow> {
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

  async updateCanned(id: string, input: { shortcut?: string; title?: string; body?: string }): Promise<CannedRow> {
    const { cannedResponses } = this.d.t
    await this.canned(id)
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

  async deleteCanned(id: string): Promise<void> {
    const { cannedResponses } = this.d.t
    const [row] = await this.d.db.transaction((tx) => tx.delete(cannedResponses).where(eq(cannedResponses.id, id)).returning())
    if (!row) throw new NotFound(`no canned response ${id}`, 'CANNED_RESPONSE_NOT_FOUND')
  }
}

/** `c` if `actor` may take part in it (its customer, its agent, managers, admins); else NotFound / Forbidden. */
const isAllowed = (actor: Actor, c: ConversationRow) =>
  c.customerId === actor.id || c.agentId === actor.id || isStaff(actor)

function allowed(actor: Actor, id: string, c: ConversationRow | undefined): ConversationRow {
  // A customer cannot tell someone else's conversation from a missing one.
  if (!c || (!isAgentLike(actor) && c.customerId !== actor.id)) throw new NotFound(`no conversation ${id}`, 'CONVERSATION_NOT_FOUND')
  if (c.customerId !== actor.id && c.agentId !== actor.id && !isStaff(actor))
    throw new Forbidden('only its customer, its agent, managers and admins may take part in this conversation', 'NOT_A_PARTICIPANT')
  return c
}

/** The customer id of a sender of an inbound channel. */
export const externalSender = (channel: string, from: string) => `ext:${channel}:${from}`

/** A unique key refused the write (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE). */
export function isUniqueViolation(error: unknown): boolean {
  for (let e: any = error; e; e = e.cause) {
    if (e.code === '23505' || e.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(String(e.message))) return true
  }
  return false
}
