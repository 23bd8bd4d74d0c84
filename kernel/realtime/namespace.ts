/**
 * One plugin's Socket.IO namespace: what the plugin registered in `setup` (events with their
 * schemas and budgets, connect and disconnect handlers), attached at start to the live Socket.IO
 * namespace. Every client event goes through the same steps: rate limit → size → schema → handler
 * → ack; any refusal is an error ack and the socket stays connected.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { Namespace, Socket } from 'socket.io'
import type { Logger } from 'pino'
import { AppError, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized } from '../../shared/errors'
import type { Identity } from '../http/identity'
import type { EventOptions, RealtimeNamespace, RealtimeSocket, RealtimeUser } from './port'

export interface NamespaceDeps {
  identity: Identity
  log: Logger
  /** Default per-socket budget of events without their own `rateLimit`. */
  eventsPerSecond: number
  /** Largest event payload (JSON bytes) a handler sees; larger ones are refused with an error ack. */
  maxPayloadBytes: number
  /** Counts each client event by outcome. */
  count(namespace: string, event: string, outcome: Outcome): void
  /** Tracks connected sockets (+1 on connect, -1 on disconnect). */
  connected(namespace: string, delta: number): void
}

export type Outcome = 'ok' | 'invalid' | 'too_large' | 'rate_limited' | 'refused' | 'unknown_event' | 'error'

interface EventDefinition {
  check: TypeCheck<TSchema>
  /** Its own per-socket budget; without one, the event shares the socket's default budget. */
  rateLimit: { points: number; windowMs: number } | undefined
  handler: (socket: RealtimeSocket, payload: unknown) => unknown
}

/** Error acks carry the HTTP error's code and message (and validation details). */
export interface ErrorAck {
  error: { code: string; message: string; details?: { path: string; message: string }[] }
}

class PayloadTooLarge extends AppError {
  constructor(limit: number) {
    super(413, 'PAYLOAD_TOO_LARGE', `the payload is larger than ${limit} bytes`)
  }
}

const USER_ROOM_PREFIX = 'user:'

/**
 * A per-socket budget: `points` events per window, the window starting at its first event (as
 * rate-limiter-flexible's memory limiter counts). Kept with the socket, in this process: a socket
 * lives in one process, and a plain counter costs no promise, shared map or timer per event.
 */
class Budget {
  private used = 0
  private resetAt = 0

  constructor(
    private readonly points: number,
    private readonly windowMs: number,
  ) {}

  /** Spends one event; throws TooManyRequests (RATE_LIMITED) once the window's budget is gone. */
  spend(now: number) {
    if (now >= this.resetAt) {
      this.used = 0
      this.resetAt = now + this.windowMs
    }
    if (++this.used > this.points) throw new TooManyRequests((this.resetAt - now) / 1000)
  }
}

export class PluginNamespace implements RealtimeNamespace {
  private readonly events = new Map<string, EventDefinition>()
  private readonly connectHandlers: ((socket: RealtimeSocket) => void | Promise<void>)[] = []
  private readonly disconnectHandlers: ((socket: RealtimeSocket, reason: string) => void | Promise<void>)[] = []
  private nsp: Namespace | undefined
  private deps: NamespaceDeps | undefined

  constructor(
    readonly name: string,
    readonly owner: string,
    private readonly roles: readonly string[] | undefined,
    /** connection state recovery for this namespace's clients */
    readonly recovery: boolean,
  ) {}

  on<S extends TSchema>(event: string, options: EventOptions<S>, handler: (socket: RealtimeSocket, payload: Static<S>) => unknown): void {
    if (this.events.has(event)) throw new Error(`plugin ${this.owner} registers realtime event ${event} on ${this.name} twice`)
    const { rateLimit } = options
    this.events.set(event, {
      check: TypeCompiler.Compile(options.body),
      rateLimit: rateLimit ? { points: rateLimit.points, windowMs: rateLimit.perSeconds * 1000 } : undefined,
      handler: handler as EventDefinition['handler'],
    })
  }

  onConnect(handler: (socket: RealtimeSocket) => void | Promise<void>): void {
    this.connectHandlers.push(handler)
  }

  onDisconnect(handler: (socket: RealtimeSocket, reason: string) => void | Promise<void>): void {
    this.disconnectHandlers.push(handler)
  }

  to(room: string | string[]) {
    return {
      emit: (event: string, data: unknown) => {
        // Before start or after stop there is nobody to reach.
        this.nsp?.to(room).emit(event, data)
      },
    }
  }

  userRoom(userId: string): string {
    return USER_ROOM_PREFIX + userId
  }

  /** Binds to the live Socket.IO namespace: the handshake guard, then the event wiring per socket. */
  attach(nsp: Namespace, deps: NamespaceDeps) {
    this.nsp = nsp
    this.deps = deps
    nsp.use((socket, next) => {
      this.admit(socket).then(
        () => next(),
        (error) => next(handshakeRefusal(error, deps.log)),
      )
    })
    nsp.on('connection', (socket) => this.connect(socket))
  }

  /** After stop: emits reach nobody instead of a closed adapter. */
  detach() {
    this.nsp = undefined
  }

  /** The HTTP guard's checks, on the handshake: a valid, unrevoked token, and one of the roles. */
  private async admit(socket: Socket) {
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token
    if (typeof token !== 'string' || token.length === 0) throw new Unauthorized('missing access token (handshake auth.token)')
    const principal = await this.deps!.identity.authenticate(`Bearer ${token}`)
    if (this.roles && !this.roles.some((r) => principal.roles.includes(r))) throw new Forbidden(`${this.name} needs one of the roles: ${this.roles.join(', ')}`)
    const user: RealtimeUser = { id: principal.id, roles: principal.roles }
    socket.data.user = user
    socket.data.issuedAt = principal.issuedAt ?? 0
  }

  /**
   * Disconnects this process's sockets whose token was revoked after the handshake (a disabled
   * user, changed roles), all of them or those of one subject. A disconnect by the server is final:
   * the client does not reconnect by itself, and a new handshake with the old token is refused.
   */
  async dropRevoked(subject?: string): Promise<number> {
    const nsp = this.nsp
    if (!nsp) return 0
    const bySubject = new Map<string, Socket[]>()
    for (const socket of nsp.sockets.values()) {
      const id = (socket.data.user as RealtimeUser | undefined)?.id
      if (!id || (subject !== undefined && id !== subject)) continue
      const list = bySubject.get(id)
      if (list) list.push(socket)
      else bySubject.set(id, [socket])
    }
    let dropped = 0
    for (const [id, sockets] of bySubject) {
      const revokedAt = await this.deps!.identity.revokedAt(id)
      if (revokedAt === undefined) continue
      for (const socket of sockets) {
        if ((socket.data.issuedAt as number) > revokedAt) continue
        socket.disconnect(true)
        dropped++
      }
    }
    return dropped
  }

  private async connect(socket: Socket) {
    const deps = this.deps!
    const face = realtimeSocket(socket)
    deps.connected(this.name, 1)
    socket.once('disconnect', (reason) => {
      deps.connected(this.name, -1)
      for (const handler of this.disconnectHandlers)
        run(() => handler(face, reason), deps.log, { namespace: this.name, socket: socket.id }, 'realtime disconnect handler failed')
    })
    // This socket's budgets: the default one (events without their own) under undefined.
    const budgets = new Map<EventDefinition | undefined, Budget>()
    socket.onAny((event: string, ...args: unknown[]) => {
      if (!this.events.has(event)) void this.dispatch(socket, face, budgets, event, args)
    })
    for (const event of this.events.keys()) socket.on(event, (...args: unknown[]) => void this.dispatch(socket, face, budgets, event, args))
    await socket.join(this.userRoom(face.user.id))
    for (const handler of this.connectHandlers) await run(() => handler(face), deps.log, { namespace: this.name, socket: socket.id }, 'realtime connect handler failed')
  }

  /** One client event: rate limit → size → schema → handler; the result or the refusal is the ack. */
  private async dispatch(socket: Socket, face: RealtimeSocket, budgets: Map<EventDefinition | undefined, Budget>, event: string, args: unknown[]) {
    const deps = this.deps!
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (answer: unknown) => void) : undefined
    const payload = args[0]
    const definition = this.events.get(event)
    let outcome: Outcome = 'ok'
    try {
      const own = definition?.rateLimit ? definition : undefined
      let budget = budgets.get(own)
      if (!budget) budgets.set(own, (budget = own ? new Budget(own.rateLimit!.points, own.rateLimit!.windowMs) : new Budget(deps.eventsPerSecond, 1000)))
      try {
        budget.spend(Date.now())
      } catch (error) {
        outcome = 'rate_limited'
        throw error
      }
      if (!definition) {
        outcome = 'unknown_event'
        throw new NotFound(`${this.name} has no event ${JSON.stringify(event).slice(0, 100)}`, 'UNKNOWN_EVENT')
      }
      if (payloadBytes(payload, deps.maxPayloadBytes) > deps.maxPayloadBytes) {
        outcome = 'too_large'
        throw new PayloadTooLarge(deps.maxPayloadBytes)
      }
      if (!definition.check.Check(payload)) {
        outcome = 'invalid'
        const details = [...definition.check.Errors(payload)].slice(0, 10).map((e) => ({ path: e.path || '/', message: e.message }))
        throw new Invalid(`${event}: ${details[0] ? `${details[0].path}: ${details[0].message}` : 'invalid payload'}`, details)
      }
      const answer = await definition.handler(face, payload)
      ack?.(answer)
    } catch (error) {
      if (outcome === 'ok') outcome = error instanceof AppError ? 'refused' : 'error'
      if (outcome === 'error') deps.log.error({ err: error, namespace: this.name, event, socket: socket.id }, 'realtime event handler failed')
      ack?.(errorAck(error))
    } finally {
      deps.count(this.name, definition ? event : 'unknown', outcome)
    }
  }
}

function realtimeSocket(socket: Socket): RealtimeSocket {
  return {
    id: socket.id,
    user: socket.data.user as RealtimeUser,
    recovered: socket.recovered,
    get rooms() {
      return socket.rooms
    },
    join: (room) => socket.join(room),
    leave: (room) => socket.leave(room),
    emit: (event, data) => void socket.emit(event, data),
    broadcast: (room, event, data) => void socket.to(room).emit(event, data),
    disconnect: () => void socket.disconnect(true),
  }
}

export function errorAck(error: unknown): ErrorAck {
  if (error instanceof AppError)
    return { error: { code: error.code, message: error.message, ...(error.details?.length ? { details: error.details } : {}) } }
  return { error: { code: 'INTERNAL', message: 'internal error' } }
}

/**
 * CONTRACT.md §6: every refused handshake fails with connect_error message "unauthorized"; the
 * error's `data` says why in the HTTP error's words (UNAUTHORIZED, TOKEN_REVOKED, FORBIDDEN, …).
 */
function handshakeRefusal(error: unknown, log: Logger) {
  const refusal = new Error('unauthorized') as Error & { data: ErrorAck['error'] }
  if (!(error instanceof AppError)) log.error({ err: error }, 'realtime handshake check failed')
  refusal.data = error instanceof AppError ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'the handshake could not be checked' }
  return refusal
}

/**
 * At most the JSON size of a flat object of short values (a character takes at most 6 bytes in
 * JSON, as \u escape), without writing the JSON; undefined when the payload is not such an object.
 */
function flatBound(payload: unknown): number | undefined {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined
  let bound = 2
  for (const key in payload) {
    const value = (payload as Record<string, unknown>)[key]
    if (typeof value === 'string') bound += value.length * 6 + 2
    else if (typeof value === 'number' || typeof value === 'boolean' || value === null) bound += 24
    else return undefined
    bound += key.length * 6 + 4
  }
  return bound
}

function payloadBytes(payload: unknown, limit: number): number {
  if (payload === undefined) return 0
  // Most events are small flat objects: when even the bound is under the limit, the exact size does not matter.
  const bound = flatBound(payload)
  if (bound !== undefined && bound <= limit) return bound
  try {
    return Buffer.byteLength(JSON.stringify(payload) ?? '')
  } catch {
    return Number.POSITIVE_INFINITY // cyclic or otherwise unserialisable: never a valid payload
  }
}

async function run(fn: () => unknown, log: Logger, context: object, message: string) {
  try {
    await fn()
  } catch (error) {
    log.error({ err: error, ...context }, message)
  }
}
