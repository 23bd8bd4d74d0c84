/**
 * The realtime port: Socket.IO namespaces that plugins register in `setup`. The kernel serves them
 * on the HTTP port (path `/socket.io/`) through @socket.io/bun-engine; with REDIS_URL a Redis
 * adapter carries room emits between processes. What the kernel guarantees for every namespace:
 * - the handshake needs a valid access token (`auth: { token }`), verified like the HTTP guard
 *   (signature, expiry, revocation), and one of the namespace's roles when it names some; any
 *   refusal fails with connect_error message "unauthorized" (CONTRACT.md §6);
 * - every client event is validated against its TypeBox schema and rate limited per socket; the
 *   handler's return value is the ack; a refusal acks `{ error: { code, message } }` and the socket
 *   stays connected;
 * - every socket joins its user's room (`userRoom(id)`) on connect;
 * - connection state recovery: a client that drops briefly gets back its rooms and missed emits,
 *   unless its namespace was registered with `recovery: false` (the plugin has a catch-up of its own).
 */
import type { Static, TSchema } from '@sinclair/typebox'

export interface RealtimeUser {
  id: string
  roles: string[]
}

export interface RealtimeSocket {
  readonly id: string
  readonly user: RealtimeUser
  /** true when connection state recovery restored this socket (rooms kept, missed packets replayed) */
  readonly recovered: boolean
  /** The rooms this socket is in now (its own id and its user room included). */
  readonly rooms: ReadonlySet<string>
  join(room: string | string[]): void | Promise<void>
  leave(room: string): void | Promise<void>
  emit(event: string, data: unknown): void
  /** to everyone in `room` except this socket (typing, read receipts), across processes */
  broadcast(room: string, event: string, data: unknown): void
  disconnect(): void
}

export interface EventOptions<S extends TSchema> {
  /** The payload's schema; a payload that breaks it acks VALIDATION_FAILED and runs nothing. */
  body: S
  /** Per-socket budget for this event (default: REALTIME_EVENTS_PER_SECOND per second). */
  rateLimit?: { points: number; perSeconds: number }
}

export interface RealtimeNamespace {
  readonly name: string
  /**
   * A client event. The payload is validated against `body`; a per-socket rate limit applies; the
   * handler's return value is the ack; a thrown AppError, a validation failure, a rate-limit refusal
   * or an unexpected error acks `{ error: { code, message } }` (codes as in HTTP: VALIDATION_FAILED,
   * FORBIDDEN, NOT_FOUND, CONFLICT, RATE_LIMITED, INTERNAL) and the socket stays connected. Events
   * sent without an ack callback still run.
   */
  on<S extends TSchema>(event: string, options: EventOptions<S>, handler: (socket: RealtimeSocket, payload: Static<S>) => unknown | Promise<unknown>): void
  onConnect(handler: (socket: RealtimeSocket) => void | Promise<void>): void
  onDisconnect(handler: (socket: RealtimeSocket, reason: string) => void | Promise<void>): void
  /**
   * Emits to a room, reaching sockets in every process (Redis adapter when REDIS_URL is set). With
   * several rooms, a socket in more than one of them gets the event once.
   */
  to(room: string | string[]): { emit(event: string, data: unknown): void }
  /** The room every socket of that user joins automatically on connect. */
  userRoom(userId: string): string
}

export interface NamespaceOptions {
  /** roles that may connect (one of them); default: any signed-in user */
  roles?: string[]
  /** connection state recovery (rooms and missed emits restored after a short drop); default true */
  recovery?: boolean
}

export interface Realtime {
  /**
   * Registers a Socket.IO namespace. Connecting needs a valid access token (handshake `auth.token`)
   * and, when `roles` is given, one of them. Two plugins registering one name stop start-up.
   * `recovery: false` turns connection state recovery off for this namespace (default on): emits are
   * not kept for reconnecting clients, and a client that reconnects starts a new session
   * (`recovered` false, no rooms), so the plugin must offer its own way to catch up.
   */
  namespace(name: `/${string}`, options?: NamespaceOptions): RealtimeNamespace
}

/**
 * What carries room emits and recovery sessions beyond one process: Socket.IO's in-memory adapter
 * (one process) or a Redis one. `adapter` is handed to the Socket.IO server, which makes one per
 * namespace (`new adapter(nsp)`), with or without recovery as the namespace asked.
 */
export interface RealtimeAdapter {
  readonly kind: 'memory' | 'redis'
  readonly adapter: unknown
  /** Per namespace with recovery, the packets the adapter keeps for it in this process's memory (absent: not kept in memory). */
  kept?(): Iterable<[namespace: string, packets: number]>
  close(): Promise<void>
}
