/**
 * The `/chat` Socket.IO namespace (CONTRACT.md §6). One room per conversation; agents, managers and
 * admins also sit in the `agents` room, where presence changes are announced. Every emit goes
 * through ctx.realtime rooms, so it reaches sockets in every process.
 *
 * Client events (each acks; a refusal acks `{ error: { code, message } }`):
 * - `conversation:start` { subject? } (customers, admins) → { conversation }; the socket joins its room.
 * - `conversation:join` { conversationId, since? } → { ok, messages, more, conversation }: every
 *   message after `since` in order (up to 500; `more` asks to join again from the last one), or the
 *   latest 500. The socket joins the room before the read, so nothing falls between the two.
 * - `conversation:leave` { conversationId } → { ok }.
 * - `message:send` { conversationId, clientId, body | cannedId } → { message } once stored.
 * - `typing` { conversationId, typing } and `message:read` { conversationId, messageId }: to the
 *   others in the room (never the sender); the read marker is stored. Both need a joined room.
 * - `conversation:close` / `conversation:reopen` { conversationId } → { conversation }.
 * - `presence:set` { status: online | away } and `presence:heartbeat` {} (agents).
 * Server events: `message:new`, `conversation:assigned` (to the agent), `conversation:updated`
 * (assigned, handed back, reopened), `conversation:closed`, `presence` (to agents).
 */
import { t } from 'elysia'
import type { PluginContext } from '../../kernel/plugin'
import type { RealtimeNamespace, RealtimeSocket } from '../../kernel/realtime'
import { Forbidden } from '../../shared/errors'
import type { Presence } from './presence'
import { Body, ClientId } from './routes'
import type { MessageLog } from './messages'
import { type ChatService, type ConversationRow, isAgentLike, type Notify, toConversationView, toMessageView } from './service'

const AGENTS_ROOM = 'agents'
export const conversationRoom = (id: string) => `conversation:${id}`

const Id = t.String({ minLength: 1, maxLength: 64 })
const strict = <P extends Parameters<typeof t.Object>[0]>(properties: P) => t.Object(properties, { additionalProperties: false })
const ConversationRef = strict({ conversationId: Id })

export interface SocketDeps {
  chat: ChatService
  messages: MessageLog
  messagesPerSecond: number
  presence: Presence
  /** agent sockets held by this process (socket id → user id), refreshed in the database */
  local: Map<string, string>
  /** settles an agent after the grace period of a disconnect */
  settleLater: (userId: string) => void
  /** keeps a promise that stop must wait for (presence writes of disconnects during shutdown) */
  track: <T>(work: Promise<T>) => Promise<T>
}

const isAgent = (socket: RealtimeSocket) => socket.user.roles.includes('agent')

/**
 * `recovery` (CHAT_CONNECTION_RECOVERY, default off): chat's own catch-up is `conversation:join`
 * with `since` (every missed message once, in order, across restarts too), so Socket.IO does not
 * also keep every emitted packet in memory for the recovery window.
 */
export function chatNamespace(ctx: PluginContext, recovery: boolean): RealtimeNamespace {
  return ctx.realtime.namespace('/chat', { recovery })
}

/** What services tell participants, as emits to rooms. */
export function notifier(ns: RealtimeNamespace): Notify {
  const parties = (c: ConversationRow) => [conversationRoom(c.id), ns.userRoom(c.customerId)]
  return {
    message: (m) => ns.to(conversationRoom(m.conversationId)).emit('message:new', { message: toMessageView(m) }),
    updated: (c) => ns.to(parties(c)).emit('conversation:updated', { conversation: toConversationView(c) }),
    assigned: (c) => c.agentId && ns.to(ns.userRoom(c.agentId)).emit('conversation:assigned', { conversation: toConversationView(c) }),
    closed: (c) => ns.to([...parties(c), ...(c.agentId ? [ns.userRoom(c.agentId)] : [])]).emit('conversation:closed', { conversation: toConversationView(c) }),
    presence: (userId, status) => ns.to(AGENTS_ROOM).emit('presence', { userId, status }),
  }
}

export function chatSockets(ns: RealtimeNamespace, d: SocketDeps) {
  const { chat, messages: log, presence } = d

  const requireJoined = (socket: RealtimeSocket, conversationId: string) => {
    if (!socket.rooms.has(conversationRoom(conversationId))) throw new Forbidden('join the conversation first (conversation:join)', 'NOT_JOINED')
  }

  ns.onConnect(async (socket) => {
    if (isAgentLike(socket.user) && !socket.recovered) await socket.join(AGENTS_ROOM)
    if (isAgent(socket)) {
      d.local.set(socket.id, socket.user.id)
      await presence.connect(socket.id, socket.user.id)
    }
  })

  ns.onDisconnect(async (socket) => {
    if (!isAgent(socket)) return
    d.local.delete(socket.id)
    await d.track(presence.disconnect(socket.id, socket.user.id))
    d.settleLater(socket.user.id)
  })

  ns.on('conversation:start', { body: strict({ subject: t.Optional(t.String({ maxLength: 200 })) }) }, async (socket, p) => {
    if (!socket.user.roles.some((r) => r === 'customer' || r === 'admin')) throw new Forbidden('only customers (and admins) start conversations', 'FORBIDDEN')
    const conversation = await chat.start(socket.user, p.subject)
    await socket.join(conversationRoom(conversation.id))
    return { conversation: toConversationView(conversation) }
  })

  ns.on('conversation:join', { body: strict({ conversationId: Id, since: t.Optional(Id) }) }, async (socket, p) => {
    const conversation = await chat.visible(socket.user, p.conversationId)
    await socket.join(conversationRoom(conversation.id))
    const { messages, more } = await log.after(conversation.id, p.since)
    return { ok: true, messages: messages.map(toMessageView), more, conversation: toConversationView(conversation) }
  })

  ns.on('conversation:leave', { body: ConversationRef }, async (socket, p) => {
    await socket.leave(conversationRoom(p.conversationId))
    return { ok: true }
  })

  ns.on(
    'message:send',
    { body: strict({ conversationId: Id, clientId: ClientId, body: t.Optional(Body), cannedId: t.Optional(Id) }), rateLimit: { points: d.messagesPerSecond, perSeconds: 1 } },
    async (socket, p) => {
      const { message } = await log.send(socket.user, p)
      return { message: toMessageView(message) }
    },
  )

  ns.on('typing', { body: strict({ conversationId: Id, typing: t.Boolean() }) }, (socket, p) => {
    requireJoined(socket, p.conversationId)
    socket.broadcast(conversationRoom(p.conversationId), 'typing', { conversationId: p.conversationId, userId: socket.user.id, typing: p.typing })
    return { ok: true }
  })

  ns.on('message:read', { body: strict({ conversationId: Id, messageId: Id }) }, async (socket, p) => {
    requireJoined(socket, p.conversationId)
    const marker = await log.markRead(socket.user, p.conversationId, p.messageId)
    socket.broadcast(conversationRoom(p.conversationId), 'message:read', { conversationId: p.conversationId, userId: socket.user.id, messageId: marker.messageId })
    return { ok: true, messageId: marker.messageId }
  })

  ns.on('conversation:close', { body: ConversationRef }, async (socket, p) => ({
    conversation: toConversationView(await chat.close(socket.user, p.conversationId)),
  }))

  ns.on('conversation:reopen', { body: ConversationRef }, async (socket, p) => ({
    conversation: toConversationView(await chat.reopen(socket.user, p.conversationId)),
  }))

  ns.on('presence:set', { body: strict({ status: t.Union([t.Literal('online'), t.Literal('away')]) }) }, async (socket, p) => {
    if (!isAgent(socket)) throw new Forbidden('only agents have a presence', 'FORBIDDEN')
    return { status: await presence.choose(socket.user.id, p.status) }
  })

  ns.on('presence:heartbeat', { body: strict({}), rateLimit: { points: 10, perSeconds: 10 } }, async (socket) => {
    if (!isAgent(socket)) throw new Forbidden('only agents have a presence', 'FORBIDDEN')
    await presence.refresh([socket.id])
    return { ok: true }
  })
}
