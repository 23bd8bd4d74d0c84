/**
 * The chat plugin's tables. Everything two processes must agree on lives here (not in memory):
 * conversation state, the per-conversation message sequence, read markers, agent presence with one
 * row per live connection, the agents' load for assignment, canned responses and outbound deliveries.
 */
import { table } from '../../kernel/db/schema'

export const schema = {
  conversations: table(
    'chat_conversations',
    (c) => ({
      id: c.id(),
      /** a user id, or `ext:<channel>:<external id>` for a sender of an inbound channel */
      customerId: c.text('customer_id').notNull(),
      agentId: c.text('agent_id'),
      /** open (waiting for an agent) → assigned → closed; closed → open on reopen */
      status: c.text('status').notNull(),
      subject: c.text('subject'),
      channel: c.text('channel'),
      externalUserId: c.text('external_user_id'),
      /** seq of the last message; a message takes lastSeq + 1 under this row's lock */
      lastSeq: c.integer('last_seq').notNull().default(0),
      /** place in the queue while open: the oldest waits least */
      queuedAt: c.timestamp('queued_at').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
      assignedAt: c.timestamp('assigned_at'),
      closedAt: c.timestamp('closed_at'),
      lastMessageAt: c.timestamp('last_message_at'),
    }),
    (c) => (t) => [
      c.index('chat_conversations_queue').on(t.status, t.queuedAt),
      c.index('chat_conversations_agent').on(t.agentId, t.status),
      c.index('chat_conversations_customer').on(t.customerId, t.id),
      // One conversation per external sender of a channel (web conversations have NULLs, which never collide).
      c.uniqueIndex('chat_conversations_external').on(t.channel, t.externalUserId),
    ],
  ),
  messages: table(
    'chat_messages',
    (c) => ({
      id: c.id(),
      conversationId: c.text('conversation_id').notNull(),
      seq: c.integer('seq').notNull(),
      senderId: c.text('sender_id').notNull(),
      body: c.text('body').notNull(),
      clientId: c.text('client_id').notNull(),
      cannedId: c.text('canned_id'),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [
      c.uniqueIndex('chat_messages_client').on(t.senderId, t.clientId),
      c.uniqueIndex('chat_messages_seq').on(t.conversationId, t.seq),
    ],
  ),
  /** How far each participant has read: only ever moves forward. */
  readMarkers: table(
    'chat_read_markers',
    (c) => ({
      conversationId: c.text('conversation_id').notNull(),
      userId: c.text('user_id').notNull(),
      messageId: c.text('message_id').notNull(),
      seq: c.integer('seq').notNull(),
      at: c.timestamp('at').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.conversationId, t.userId] })],
  ),
  /** An agent's presence and load. status is offline when no live connection is left. */
  agents: table('chat_agents', (c) => ({
    userId: c.text('user_id').primaryKey(),
    status: c.text('status').notNull(),
    /** what the agent chose (online or away); applies while connected */
    chosen: c.text('chosen').notNull(),
    /** conversations assigned and not closed; assignment is conditional on load < capacity */
    load: c.integer('load').notNull().default(0),
    /** round-robin turn: the agent assigned longest ago goes first */
    lastAssigned: c.bigint('last_assigned').notNull().default(0),
    updatedAt: c.timestamp('updated_at').notNull(),
  })),
  /** One row per connected agent socket, in any process; a row past expiresAt is a dead connection. */
  connections: table(
    'chat_connections',
    (c) => ({
      socketId: c.text('socket_id').primaryKey(),
      userId: c.text('user_id').notNull(),
      connectedAt: c.timestamp('connected_at').notNull(),
      expiresAt: c.timestamp('expires_at').notNull(),
    }),
    (c) => (t) => [c.index('chat_connections_user').on(t.userId, t.expiresAt), c.index('chat_connections_expiry').on(t.expiresAt)],
  ),
  cannedResponses: table(
    'chat_canned_responses',
    (c) => ({
      id: c.id(),
      shortcut: c.text('shortcut').notNull(),
      title: c.text('title').notNull(),
      body: c.text('body').notNull(),
      createdBy: c.text('created_by').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [c.uniqueIndex('chat_canned_shortcut').on(t.shortcut)],
  ),
  /** Agents' replies waiting to go out to an inbound channel; written with the message, sent after. */
  deliveries: table(
    'chat_deliveries',
    (c) => ({
      id: c.id(),
      messageId: c.text('message_id').notNull(),
      conversationId: c.text('conversation_id').notNull(),
      channel: c.text('channel').notNull(),
      externalUserId: c.text('external_user_id').notNull(),
      body: c.text('body').notNull(),
      attempts: c.integer('attempts').notNull().default(0),
      nextAttemptAt: c.timestamp('next_attempt_at').notNull(),
      leaseUntil: c.timestamp('lease_until'),
      deliveredAt: c.timestamp('delivered_at'),
      failedAt: c.timestamp('failed_at'),
      lastError: c.text('last_error'),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.index('chat_deliveries_due').on(t.deliveredAt, t.failedAt, t.nextAttemptAt), c.uniqueIndex('chat_deliveries_message').on(t.messageId)],
  ),
}

export type ChatSchema = typeof schema
