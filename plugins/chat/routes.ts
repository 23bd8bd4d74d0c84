/**
 * HTTP face of chat (CONTRACT.md §6, REST part): conversation lists and history with cursors,
 * start / send / close / reopen for clients without a socket, agents' presence, canned responses,
 * inbound channel webhooks and the outbound deliveries (admin).
 */
import { t } from 'elysia'
import { rawBody } from '../../kernel/http/router'
import type { PluginContext } from '../../kernel/plugin'
import { Conversation, Message } from '../../shared/contracts/chat'
import { Invalid, NotFound } from '../../shared/errors'
import { ListQuery, Page, decodeCursor, isString, page } from '../../shared/pagination'
import { type Channels, inboundMessages, verify } from './channels'
import type { Deliveries } from './deliveries'
import type { Presence } from './presence'
import { type CannedResponses, toCannedView } from './canned'
import type { MessageLog } from './messages'
import { AGENTS, type ChatService, toConversationView, toMessageView } from './service'

const Id = t.String({ minLength: 1, maxLength: 64 })
const IdParams = t.Object({ id: Id })
const Time = t.String({ format: 'date-time' })
const Status = t.Union([t.Literal('open'), t.Literal('assigned'), t.Literal('closed')])
export const ClientId = t.String({ minLength: 1, maxLength: 128, error: 'clientId must be 1 to 128 characters' })
export const Body = t.String({ minLength: 1, maxLength: 4000, error: 'body must be 1 to 4000 characters' })
const Canned = t.Object({ id: t.String(), shortcut: t.String(), title: t.String(), body: t.String(), createdBy: t.String(), createdAt: Time, updatedAt: Time })
const Shortcut = t.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$', error: 'shortcut must be 1 to 64 letters, digits, _, . or -' })
const Title = t.String({ minLength: 1, maxLength: 200, pattern: '\\S', error: 'title must be 1 to 200 characters, not only spaces' })
const Agent = t.Object({ userId: t.String(), status: t.Union([t.Literal('online'), t.Literal('away'), t.Literal('offline')]), load: t.Integer(), capacity: t.Integer() })
const Delivery = t.Object({
  id: t.String(),
  messageId: t.String(),
  conversationId: t.String(),
  channel: t.String(),
  to: t.String(),
  attempts: t.Integer(),
  status: t.Union([t.Literal('pending'), t.Literal('delivered'), t.Literal('failed')]),
  lastError: t.Union([t.String(), t.Null()]),
  createdAt: Time,
})

const isSeq = (k: unknown): k is number => Number.isInteger(k) && (k as number) > 0


export interface RouteDeps {
  chat: ChatService
  messages: MessageLog
  canned: CannedResponses
  presence: Presence
  deliveries: Deliveries
  channels: Channels
  capacity: number
  toleranceSeconds: number
  receiveInbound: (channel: string, messages: ReturnType<typeof inboundMessages>) => Promise<number>
}

export function chatRoutes(ctx: PluginContext, d: RouteDeps) {
  const { chat, messages, canned } = d

  return (
    ctx
      .router()
      // ------------------------------------------------------------------ conversations
      .get(
        '/conversations',
        async ({ query, principal }) => {
          const limit = query.limit ?? 50
          const rows = await chat.list(principal, { status: query.status, agentId: query.agentId || undefined }, limit + 1, decodeCursor(query.cursor, isString))
          return page(rows, limit, toConversationView, (c) => c.id)
        },
        {
          auth: true,
          query: t.Composite([ListQuery, t.Object({ status: t.Optional(Status), agentId: t.Optional(t.String({ maxLength: 64 })) })]),
          response: { 200: Page(Conversation) },
          detail: { summary: 'Conversations, newest first: a customer sees their own, agents, managers and admins see all' },
        },
      )
      .post('/conversations', async ({ body, principal }) => toConversationView(await chat.start(principal, body.subject)), {
        auth: ['customer', 'admin'],
        creates: true,
        body: t.Object({ subject: t.Optional(t.String({ maxLength: 200 })) }, { additionalProperties: false }),
        response: { 201: Conversation },
        detail: { summary: 'Start a conversation (as conversation:start does); it is assigned to an online agent with room, or queued' },
      })
      .get('/conversations/:id', async ({ params, principal }) => toConversationView(await chat.visible(principal, params.id)), {
        auth: true,
        params: IdParams,
        response: { 200: Conversation },
        detail: { summary: 'A conversation (its customer, its agent, managers and admins)' },
      })
      .get(
        '/conversations/:id/messages',
        async ({ params, query, principal }) => {
          await chat.visible(principal, params.id)
          const limit = query.limit ?? 50
          const rows = await messages.history(params.id, limit + 1, decodeCursor(query.cursor, isSeq))
          return page(rows, limit, toMessageView, (m) => m.seq)
        },
        {
          auth: true,
          params: IdParams,
          query: ListQuery,
          response: { 200: Page(Message) },
          detail: { summary: 'Message history, newest first' },
        },
      )
      .get(
        '/conversations/:id/read-markers',
        async ({ params, principal }) => {
          await chat.visible(principal, params.id)
          const rows = await messages.readMarkers(params.id)
          return { items: rows.map((r) => ({ userId: r.userId, messageId: r.messageId, seq: r.seq, at: r.at.toISOString() })) }
        },
        {
          auth: true,
          params: IdParams,
          response: { 200: t.Object({ items: t.Array(t.Object({ userId: t.String(), messageId: t.String(), seq: t.Integer(), at: Time })) }) },
          detail: { summary: 'How far each participant has read (message:read moves a marker forward, never back)' },
        },
      )
      .post(
        '/conversations/:id/messages',
        async ({ params, body, principal, set }) => {
          const { message, fresh } = await messages.send(principal, { conversationId: params.id, ...body })
          if (!fresh) set.status = 200
          return toMessageView(message)
        },
        {
          auth: true,
          creates: true,
          params: IdParams,
          body: t.Object({ clientId: ClientId, body: t.Optional(Body), cannedId: t.Optional(Id) }, { additionalProperties: false }),
          response: { 200: Message, 201: Message },
          detail: { summary: 'Send a message (as message:send does): 201 when stored, 200 with the first message when this clientId was sent before' },
        },
      )
      .post('/conversations/:id/close', async ({ params, principal, set }) => {
        set.status = 200
        return toConversationView(await chat.close(principal, params.id))
      }, {
        auth: [...AGENTS],
        params: IdParams,
        response: { 200: Conversation },
        detail: { summary: 'Close a conversation (its agent, managers, admins); everyone in it gets conversation:closed' },
      })
      .post('/conversations/:id/reopen', async ({ params, principal }) => toConversationView(await chat.reopen(principal, params.id)), {
        auth: true,
        params: IdParams,
        response: { 200: Conversation },
        detail: { summary: 'Reopen a closed conversation; it is queued for an agent (a customer writing to it does the same)' },
      })
      // ------------------------------------------------------------------ agents
      .get(
        '/agents',
        async () => ({
          items: (await d.presence.list()).map((a) => ({ userId: a.userId, status: a.status as 'online' | 'away' | 'offline', load: a.load, capacity: d.capacity })),
        }),
        { auth: [...AGENTS], response: { 200: t.Object({ items: t.Array(Agent) }) }, detail: { summary: 'Agents with their presence and load' } },
      )
      // ------------------------------------------------------------------ canned responses
      .get(
        '/canned-responses',
        async ({ query }) => {
          const limit = query.limit ?? 50
          return page(await canned.list(limit + 1, decodeCursor(query.cursor, isString)), limit, toCannedView, (c) => c.shortcut)
        },
        { auth: [...AGENTS], query: ListQuery, response: { 200: Page(Canned) }, detail: { summary: 'Canned responses, by shortcut' } },
      )
      .post('/canned-responses', async ({ body, principal }) => toCannedView(await canned.create(principal, body)), {
        auth: [...AGENTS],
        creates: true,
        body: t.Object({ shortcut: Shortcut, title: Title, body: Body }, { additionalProperties: false }),
        response: { 201: Canned },
        detail: { summary: 'Create a canned response (409 if the shortcut is taken); agents send it with message:send { cannedId }' },
      })
      .get('/canned-responses/:id', async ({ params }) => toCannedView(await canned.get(params.id)), {
        auth: [...AGENTS],
        params: IdParams,
        response: { 200: Canned },
        detail: { summary: 'A canned response' },
      })
      .patch(
        '/canned-responses/:id',
        async ({ params, body }) => {
          if (Object.keys(body).length === 0) throw new Invalid('nothing to change', [{ path: '/', message: 'give shortcut, title or body' }])
          return toCannedView(await canned.update(params.id, body))
        },
        {
          auth: [...AGENTS],
          params: IdParams,
          body: t.Object({ shortcut: t.Optional(Shortcut), title: t.Optional(Title), body: t.Optional(Body) }, { additionalProperties: false }),
          response: { 200: Canned },
          detail: { summary: 'Change a canned response' },
        },
      )
      .delete(
        '/canned-responses/:id',
        async ({ params, set }) => {
          await canned.delete(params.id)
          set.status = 204
        },
        { auth: [...AGENTS], params: IdParams, detail: { summary: 'Delete a canned response' } },
      )
      // ------------------------------------------------------------------ inbound channels
      .post(
        '/channels/:channel/webhook',
        async ({ params, request, body }) => {
          const config = d.channels[params.channel]
          if (!config) throw new NotFound(`no channel ${params.channel}`, 'CHANNEL_NOT_FOUND')
          // The signature is over the bytes as sent, which the kernel's JSON reader kept.
          verify(config, rawBody(request), request.headers, d.toleranceSeconds)
          const received = await d.receiveInbound(params.channel, inboundMessages(config, body))
          return { received }
        },
        {
          params: t.Object({ channel: t.String({ maxLength: 32 }) }),
          // Any JSON object here; the channel's own shape is checked after the signature.
          body: t.Object({}, { additionalProperties: true, description: "the channel's webhook body (see the channel kinds)" }),
          response: { 200: t.Object({ received: t.Integer() }) },
          detail: {
            summary: "Inbound messages of a channel; the signature over the raw body is checked first (401 BAD_SIGNATURE / STALE_WEBHOOK, nothing stored)",
          },
        },
      )
      .get(
        '/channels/:channel/webhook',
        ({ params, query }) => {
          const config = d.channels[params.channel]
          if (!config || config.kind !== 'messenger' || !config.verifyToken) throw new NotFound(`no Messenger channel ${params.channel}`, 'CHANNEL_NOT_FOUND')
          if (query['hub.mode'] !== 'subscribe' || query['hub.verify_token'] !== config.verifyToken)
            throw new Invalid('the verify token does not match', undefined, 'BAD_VERIFY_TOKEN')
          return query['hub.challenge'] ?? ''
        },
        {
          params: t.Object({ channel: t.String({ maxLength: 32 }) }),
          query: t.Object({ 'hub.mode': t.Optional(t.String()), 'hub.verify_token': t.Optional(t.String()), 'hub.challenge': t.Optional(t.String({ maxLength: 200 })) }),
          detail: { summary: "Messenger's webhook verification: answers hub.challenge when hub.verify_token matches" },
        },
      )
      .get(
        '/deliveries',
        async ({ query }) => {
          const limit = query.limit ?? 50
          const rows = await d.deliveries.list(limit + 1, decodeCursor(query.cursor, isString))
          return page(
            rows,
            limit,
            (r) => ({
              id: r.id,
              messageId: r.messageId,
              conversationId: r.conversationId,
              channel: r.channel,
              to: r.externalUserId,
              attempts: r.attempts,
              status: r.deliveredAt ? ('delivered' as const) : r.failedAt ? ('failed' as const) : ('pending' as const),
              lastError: r.lastError,
              createdAt: r.createdAt.toISOString(),
            }),
            (r) => r.id,
          )
        },
        { auth: ['admin'], query: ListQuery, response: { 200: Page(Delivery) }, detail: { summary: 'Replies sent (or being sent) to inbound channels, newest first' } },
      )
  )
}
