/**
 * A small typed helper for `/chat` clients (CONTRACT.md §6) that makes missed messages a non-issue:
 * every message of a followed conversation reaches `onMessage` exactly once and in order, across
 * network drops and server restarts, without a reload.
 *
 * How: messages carry `seq` (1, 2, … per conversation). The helper remembers the last one it handed
 * over per conversation; a duplicate (seq already seen) is dropped; a gap (a later seq first) or a
 * reconnect that connection state recovery could not restore (`socket.recovered === false`, e.g.
 * after a server restart) makes it join again with `since` = the last message id and hand over
 * what came back, then whatever arrived meanwhile, in seq order. Sends keep their clientId across
 * retries, so a send repeated after a drop is stored once.
 *
 * Pure: it depends on socket.io-client's types only; create the socket yourself
 * (`io(url + '/chat', { auth: { token } })`) and pass it in.
 */
import type { Socket } from 'socket.io-client'

export interface ChatMessage {
  id: string
  conversationId: string
  senderId: string
  body: string
  createdAt: string
  clientId: string
  seq: number
}

export interface ChatConversation {
  id: string
  customerId: string
  agentId: string | null
  status: 'open' | 'assigned' | 'closed'
  subject: string | null
  channel: string | null
  createdAt: string
  updatedAt: string
  assignedAt: string | null
  closedAt: string | null
  lastMessageAt: string | null
}

export class ChatError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = code
  }
}

export interface ChatClientOptions {
  /** every message of a followed conversation, once, in order */
  onMessage: (message: ChatMessage) => void
  /** how long to wait for an ack before trying again (default 5000 ms) */
  ackTimeoutMs?: number
  /** agents: send `presence:heartbeat` this often (default: never) */
  heartbeatMs?: number
}

interface Followed {
  lastSeq: number
  lastId?: string
  /** messages that arrived out of order or while a join was running */
  pending: Map<number, ChatMessage>
  syncing?: Promise<void>
}

export class ChatClient {
  private readonly followed = new Map<string, Followed>()
  private readonly heartbeat: ReturnType<typeof setInterval> | undefined

  constructor(
    readonly socket: Socket,
    private readonly options: ChatClientOptions,
  ) {
    socket.on('message:new', ({ message }: { message: ChatMessage }) => this.arrived(message))
    socket.on('connect', () => {
      // Recovery replays what was missed; without it (a restart, a long drop) join again from the last message.
      if (!socket.recovered) for (const id of this.followed.keys()) void this.sync(id)
    })
    if (options.heartbeatMs)
      this.heartbeat = setInterval(() => {
        if (socket.connected) socket.emit('presence:heartbeat', {})
      }, options.heartbeatMs)
  }

  /** Emits and waits for the ack, retrying (the same payload) after a timeout or a drop; throws a refusal as ChatError. */
  async request<T = any>(event: string, payload: unknown, attempts = 20): Promise<T> {
    const timeout = this.options.ackTimeoutMs ?? 5000
    for (let attempt = 1; ; attempt++) {
      try {
        if (!this.socket.connected) await this.connected(timeout)
        const ack = await this.socket.timeout(timeout).emitWithAck(event, payload)
        if (ack && typeof ack === 'object' && 'error' in ack) throw new ChatError(ack.error.code, ack.error.message)
        return ack as T
      } catch (error) {
        if (attempt >= attempts) throw error
        // Over the per-socket budget: wait a moment and try again; other refusals are final.
        if (error instanceof ChatError && error.code !== 'RATE_LIMITED') throw error
        if (error instanceof ChatError) await new Promise((r) => setTimeout(r, 250))
      }
    }
  }

  private connected(ms: number) {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.off('connect', done)
        reject(new Error('not connected'))
      }, ms)
      const done = () => {
        clearTimeout(timer)
        resolve()
      }
      this.socket.once('connect', done)
    })
  }

  /** Starts a conversation (customers) and follows it. */
  async start(subject?: string): Promise<ChatConversation> {
    // Not retried: a start whose ack was lost may have opened a conversation already.
    const { conversation } = await this.request<{ conversation: ChatConversation }>('conversation:start', subject === undefined ? {} : { subject }, 1)
    this.followed.set(conversation.id, { lastSeq: 0, pending: new Map() })
    return conversation
  }

  /** Follows a conversation: joins it and hands over the latest messages (or those after what was seen). */
  async join(conversationId: string): Promise<void> {
    if (!this.followed.has(conversationId)) this.followed.set(conversationId, { lastSeq: 0, pending: new Map() })
    await this.sync(conversationId)
  }

  /** Sends a message; retried with the same clientId until stored. */
  async send(conversationId: string, body: string, clientId: string = crypto.randomUUID()): Promise<ChatMessage> {
    const { message } = await this.request<{ message: ChatMessage }>('message:send', { conversationId, clientId, body })
    return message
  }

  /** The last message handed over for a conversation. */
  last(conversationId: string): { seq: number; id?: string } | undefined {
    const f = this.followed.get(conversationId)
    return f && { seq: f.lastSeq, id: f.lastId }
  }

  close() {
    clearInterval(this.heartbeat)
    this.socket.off('message:new')
    this.socket.disconnect()
  }

  private arrived(message: ChatMessage) {
    const f = this.followed.get(message.conversationId)
    if (!f || message.seq <= f.lastSeq) return
    f.pending.set(message.seq, message)
    if (f.syncing) return
    this.flush(f)
    if (f.pending.size > 0) void this.sync(message.conversationId) // a gap: something is missing
  }

  /** Hands over pending messages while they continue the sequence. */
  private flush(f: Followed) {
    for (let next = f.pending.get(f.lastSeq + 1); next; next = f.pending.get(f.lastSeq + 1)) {
      f.pending.delete(next.seq)
      f.lastSeq = next.seq
      f.lastId = next.id
      this.options.onMessage(next)
    }
    for (const seq of f.pending.keys()) if (seq <= f.lastSeq) f.pending.delete(seq)
  }

  /** Joins from the last message until nothing more is missing; one at a time per conversation. */
  private sync(conversationId: string): Promise<void> {
    const f = this.followed.get(conversationId)
    if (!f) return Promise.resolve()
    f.syncing ??= (async () => {
      try {
        for (;;) {
          const before = f.lastSeq
          const ack = await this.request<{ messages: ChatMessage[]; more?: boolean }>('conversation:join', f.lastId ? { conversationId, since: f.lastId } : { conversationId })
          for (const m of ack.messages) if (m.seq > f.lastSeq) f.pending.set(m.seq, m)
          // The first join without `since` starts wherever the latest page starts.
          if (f.lastSeq === 0 && !f.lastId && ack.messages.length) f.lastSeq = ack.messages[0].seq - 1
          this.flush(f)
          if (ack.more) continue
          // Done, or stuck on a gap the server cannot fill yet: the next message or reconnect tries again.
          if (f.pending.size === 0 || f.lastSeq === before) return
        }
      } finally {
        f.syncing = undefined
      }
    })()
    return f.syncing
  }
}
