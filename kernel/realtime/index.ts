/**
 * The realtime port's server: one Socket.IO server on @socket.io/bun-engine, served by the HTTP
 * edge on the HTTP port (path /socket.io/), with the namespaces plugins registered in setup.
 * Lifecycle: `forPlugin` during setup (no I/O) → `start` (adapter, namespaces) → `disconnectAll`
 * on shutdown (clients reconnect elsewhere and recover) → `stop` (adapter connections closed).
 */
import { Server as Engine } from '@socket.io/bun-engine'
import type { Server as BunServer, WebSocketHandler } from 'bun'
import type { Logger } from 'pino'
import { Server } from 'socket.io'
import type { KernelConfig } from '../config'
import type { Identity } from '../http/identity'
import { type Metrics, tally } from '../http/metrics'
import { CorkedWebSocket } from './corked'
import { memoryAdapter } from './memory'
import { PluginNamespace } from './namespace'
import type { Realtime, RealtimeAdapter } from './port'
import { redisAdapter } from './redis'

export const REALTIME_PATH = '/socket.io/'
/** Socket.IO's defaults, kept explicit: the edge's idleTimeout (60 s) must stay above the ping interval. */
const PING_INTERVAL_MS = 25_000
const PING_TIMEOUT_MS = 20_000
const NAMESPACE_NAME = /^\/[a-z0-9][a-z0-9-]*$/

export interface RealtimeDeps {
  config: KernelConfig
  log: Logger
  identity: Identity
  metrics: Metrics
}

/** What the HTTP edge needs to serve the engine's requests and WebSockets. */
export interface RealtimeEdge {
  path: string
  polling: boolean
  /** The engine's own limit per message; a polling request with a larger body is refused up front. */
  maxMessageBytes: number
  handle(request: Request, server: BunServer<unknown>): Promise<Response>
  websocket: WebSocketHandler<any>
}

export class RealtimeServer {
  private readonly namespaces = new Map<string, PluginNamespace>()
  private readonly engine: Engine
  private io: Server | undefined
  private adapter: RealtimeAdapter | undefined
  private revocationSweep: ReturnType<typeof setInterval> | undefined
  private stopListening: (() => void) | undefined
  readonly edge: RealtimeEdge

  constructor(private readonly deps: RealtimeDeps) {
    const maxMessageBytes = deps.config.REALTIME_MAX_PAYLOAD_BYTES * 16
    this.engine = new Engine({ path: REALTIME_PATH, pingInterval: PING_INTERVAL_MS, pingTimeout: PING_TIMEOUT_MS, maxHttpBufferSize: maxMessageBytes })
    const engine = this.engine
    this.edge = {
      path: REALTIME_PATH,
      polling: deps.config.REALTIME_POLLING,
      maxMessageBytes,
      handle: (request, server) => engine.handleRequest(request, server as never),
      websocket: {
        // The engine writes through CorkedWebSocket: the frames of one event-loop turn go out in one write per socket.
        open: (ws) => engine.onWebSocketOpen(new CorkedWebSocket(ws) as never),
        message: (ws, message) => engine.onWebSocketMessage(ws as never, message as never),
        close: (ws, code, reason) => engine.onWebSocketClose(ws as never, code, reason),
        maxPayloadLength: maxMessageBytes,
        // Socket.IO pings every 25 s; Bun's own idle cut-off must not come first.
        idleTimeout: 60,
      },
    }
  }

  /** The `ctx.realtime` of one plugin. */
  forPlugin(plugin: string): Realtime {
    return {
      namespace: (name, options = {}) => {
        if (!NAMESPACE_NAME.test(name)) throw new Error(`plugin ${plugin}: realtime namespace ${JSON.stringify(name)} must look like /name (lower case, digits, -)`)
        const taken = this.namespaces.get(name)
        if (taken) throw new Error(`plugin ${plugin} registers realtime namespace ${name}, which plugin ${taken.owner} already registered`)
        const namespace = new PluginNamespace(name, plugin, options.roles, options.recovery ?? true)
        this.namespaces.set(name, namespace)
        return namespace
      },
    }
  }

  /** Creates the Socket.IO server with the configured adapter and opens the registered namespaces. */
  async start() {
    const { config, log, identity, metrics } = this.deps
    const recovers = (name: string) => this.namespaces.get(name)?.recovery ?? true
    this.adapter = config.REDIS_URL
      ? redisAdapter({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, maxLen: config.REALTIME_STREAM_MAXLEN }, log, recovers)
      : memoryAdapter(recovers, config.REALTIME_STREAM_MAXLEN)
    const io = new Server({
      serveClient: false,
      adapter: this.adapter.adapter as never,
      connectionStateRecovery: {
        maxDisconnectionDuration: config.REALTIME_RECOVERY_SECONDS * 1000,
        // The handshake is checked again on recovery, so a revoked token cannot come back through it.
        skipMiddlewares: false,
      },
    })
    io.bind(this.engine as never)
    // The default namespace serves nobody: every namespace is a plugin's, with its guard.
    io.of('/').use((_socket, next) => next(Object.assign(new Error('unauthorized'), { data: { code: 'NOT_FOUND', message: 'connect to a plugin namespace, e.g. /live' } })))

    const m = metrics.forPlugin('realtime')
    const sockets = m.gauge('connected_sockets', 'Socket.IO connections open in this process, by namespace', ['namespace'])
    const kept = this.adapter.kept?.bind(this.adapter)
    if (kept)
      m.gauge('recovery_packets', 'Emits kept in this process for connection state recovery, by namespace (in-memory adapter)', ['namespace'], function () {
        for (const [namespace, packets] of kept()) this.set({ namespace }, packets)
      })
    const events = tally(m.counter('events_total', 'Socket.IO client events by namespace, event and outcome', ['namespace', 'event', 'outcome']))
    for (const namespace of this.namespaces.values()) {
      sockets.set({ namespace: namespace.name }, 0)
      namespace.attach(io.of(namespace.name), {
        identity,
        log: log.child({ namespace: namespace.name, plugin: namespace.owner }),
        eventsPerSecond: config.REALTIME_EVENTS_PER_SECOND,
        maxPayloadBytes: config.REALTIME_MAX_PAYLOAD_BYTES,
        count: (ns, event, outcome) => events({ namespace: ns, event, outcome }),
        connected: (ns, delta) => sockets.inc({ namespace: ns }, delta),
      })
    }
    this.io = io
    // A token revoked after its handshake ends the connection: at once when this process revoked
    // it, else at the next sweep (the revocation is in the shared cache).
    const drop = (subject?: string) => {
      for (const namespace of this.namespaces.values())
        namespace.dropRevoked(subject).catch((error) => log.warn({ err: error, namespace: namespace.name }, 'revocation sweep failed'))
    }
    this.stopListening = identity.onRevoked((subject) => drop(subject))
    this.revocationSweep = setInterval(() => drop(), config.REALTIME_REVOCATION_SWEEP_SECONDS * 1000)
    this.revocationSweep.unref?.()
  }

  /**
   * Closes every client connection of this process without ending the sessions: clients see a
   * transport close, reconnect (to another process once this one is not ready) and, within the
   * recovery window, get their rooms and missed events back (across processes with Redis).
   */
  disconnectAll() {
    this.engine.close()
  }

  /** Closes the namespaces and the adapter's connections. */
  async stop() {
    clearInterval(this.revocationSweep)
    this.stopListening?.()
    const io = this.io
    this.io = undefined
    for (const namespace of this.namespaces.values()) namespace.detach()
    await io?.close()
    await this.adapter?.close()
  }

  get adapterKind(): RealtimeAdapter['kind'] | undefined {
    return this.adapter?.kind
  }
}

export type { Realtime, RealtimeNamespace, RealtimeSocket, RealtimeUser } from './port'
