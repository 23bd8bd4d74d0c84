import { type Static, Type as t } from '@sinclair/typebox'
import { event } from './define'

export const ConversationStatus = t.Union([t.Literal('open'), t.Literal('assigned'), t.Literal('closed')])
export type ConversationStatus = Static<typeof ConversationStatus>

export const PresenceStatus = t.Union([t.Literal('online'), t.Literal('away'), t.Literal('offline')])
export type PresenceStatus = Static<typeof PresenceStatus>

const Time = t.String({ format: 'date-time' })
const Nullable = <T extends Parameters<typeof t.Union>[0][number]>(s: T) => t.Union([s, t.Null()])

/** CONTRACT.md §6 `message`, plus `seq`: its place in the conversation (1, 2, …), the order of delivery. */
export const Message = t.Object({
  id: t.String(),
  conversationId: t.String(),
  senderId: t.String(),
  body: t.String(),
  createdAt: Time,
  clientId: t.String(),
  seq: t.Integer(),
})
export type Message = Static<typeof Message>

/**
 * A conversation between a customer (a user, or an external sender `ext:<channel>:<id>` of an inbound
 * channel) and the agent it is assigned to. open (queued) → assigned → closed; closed → open again
 * when the customer writes or someone reopens it.
 */
export const Conversation = t.Object({
  id: t.String(),
  customerId: t.String(),
  agentId: Nullable(t.String()),
  status: ConversationStatus,
  subject: Nullable(t.String()),
  /** null for the web chat, else the inbound channel it came from */
  channel: Nullable(t.String()),
  createdAt: Time,
  updatedAt: Time,
  assignedAt: Nullable(Time),
  closedAt: Nullable(Time),
  lastMessageAt: Nullable(Time),
})
export type Conversation = Static<typeof Conversation>

export const chatEvents = {
  'chat.message.created': event({
    payload: t.Object({ message: Message, channel: Nullable(t.String()) }),
    doc: 'A message was stored (once per message, however often its clientId was sent).',
  }),
  'chat.conversation.opened': event({
    payload: t.Object({ conversation: Conversation, reason: t.Union([t.Literal('started'), t.Literal('inbound'), t.Literal('handed_back')]) }),
    doc: 'A conversation is waiting for an agent: new, from an inbound channel, or handed back by an agent who went offline.',
  }),
  'chat.conversation.assigned': event({
    payload: t.Object({ conversation: Conversation }),
    doc: 'A conversation was assigned to an agent (round-robin among online agents under capacity).',
  }),
  'chat.conversation.closed': event({
    payload: t.Object({ conversation: Conversation, closedBy: t.String() }),
    doc: 'An agent, manager or admin closed a conversation.',
  }),
  'chat.conversation.reopened': event({
    payload: t.Object({ conversation: Conversation, reopenedBy: t.String() }),
    doc: 'A closed conversation is open again (its customer wrote, or someone reopened it); it is queued for an agent.',
  }),
}
