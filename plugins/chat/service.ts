/**
 * Conversations: start, find, list, close and reopen, and the conversations of inbound channels;
 * with the chat plugin's shared types (actors, views, `Notify`). Messages are in messages.ts,
 * canned responses in canned.ts. No HTTP or sockets here: routes.ts and sockets.ts translate
 * requests into these calls, and tell participants what changed through `Notify` once a
 * transaction has committed.
 */
import { and, asc, desc, eq, gt, inArray, lt, sql } from 'drizzle-orm'
import type { Database, Db, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import type { PluginContext } from '../../kernel/plugin'
import type { Conversation, ConversationStatus, Message } from '../../shared/contracts/chat'
import { Conflict, Forbidden, Invalid, isAppError, NotFound } from '../../shared/errors'
import type { MessageLog } from './messages'
import type { ChatSchema } from './schema'

type T = Tables<ChatSchema>
export type ConversationRow = T['conversations']['$inferSelect']
export type MessageRow = T['messages']['$inferSelect']
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

/** The messages of one batch share one Date, and each is viewed three times (event, emit, ack): its text is made once. */
let lastDate: Date | undefined
let lastText = ''
const isoOnce = (d: Date) => (d === lastDate ? lastText : ((lastDate = d), (lastText = d.toISOString())))

export const toMessageView = (m: MessageRow): Message => ({
  id: m.id,
  conversationId: m.conversationId,
  senderId: m.senderId,
  body: m.body,
  createdAt: isoOnce(m.createdAt),
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

export class ChatService {
  constructor(
    private readonly d: ChatDeps,
    private readonly messages: MessageLog,
  ) {}

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
    const reopened = await this.d.db.transaction((tx) => reopenIn(this.d, tx, id, actor.id))
    if (reopened) {
      this.d.notify().updated(reopened)
      await this.d.assign()
    }
    return (await this.find(id)) ?? c
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
      const { fresh } = await this.messages.store(conversation.id, senderId, item.id, item.text.slice(0, 4000))
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

}

/** Opens a closed conversation again (queued for an agent) inside `tx`; undefined when it was not closed. */
export async function reopenIn(d: Pick<ChatDeps, 't' | 'publish'>, tx: Db, id: string, by: string) {
const { conversations } = d.t
  const now = new Date()
  const [row] = await tx
    .update(conversations)
    .set({ status: 'open', agentId: null, assignedAt: null, closedAt: null, queuedAt: now, updatedAt: now })
    .where(and(eq(conversations.id, id), eq(conversations.status, 'closed')))
    .returning()
  if (row) await d.publish('chat.conversation.reopened', { conversation: toConversationView(row), reopenedBy: by })
  return row
}

/** `c` if `actor` may take part in it (its customer, its agent, managers, admins); else NotFound / Forbidden. */
export const isAllowed = (actor: Actor, c: Pick<ConversationRow, 'customerId' | 'agentId'>) =>
  c.customerId === actor.id || c.agentId === actor.id || isStaff(actor)

export function allowed(actor: Actor, id: string, c: ConversationRow | undefined): ConversationRow {
  // A customer cannot tell someone else's conversation from a missing one.
  if (!c || (!isAgentLike(actor) && c.customerId !== actor.id)) throw new NotFound(`no conversation ${id}`, 'CONVERSATION_NOT_FOUND')
  if (c.customerId !== actor.id && c.agentId !== actor.id && !isStaff(actor))
    throw new Forbidden('only its customer, its agent, managers and admins may take part in this conversation', 'NOT_A_PARTICIPANT')
  return c
}

/** The customer id of a sender of an inbound channel. */
export const externalSender = (channel: string, from: string) => `ext:${channel}:${from}`
