/**
 * The edge of the HTTP server: what every request gets before and after the Elysia app, as plain
 * code around `app.fetch` instead of Elysia lifecycle hooks (which cost more per request than the
 * work they do). Bun's native router dispatches each route template to its own handler, so
 * metrics know the template without asking the app. Step by step: request id → CORS → for /api:
 * readiness, body size, per-IP limit → the app → security headers → metrics and the access log.
 * Socket.IO's path is a native route of its own that goes to the engine, never through Elysia:
 * CORS → readiness → transport allowed → body size → per-IP limit on handshakes → the engine.
 */
import type { Server } from 'bun'
import type { AnyElysia } from 'elysia'
import type { Logger } from 'pino'
import { BadRequest, PayloadTooLarge, Unavailable } from '../../shared/errors'
import type { RateLimiter } from '../cache'
import { callScope, validTraceparent } from '../calls/context'
import type { KernelConfig } from '../config'
import type { ServiceTokens } from '../calls/service-token'
import { ADMITTED_HEADER, type Gateway } from '../gateway'
import type { OpenApiDocument } from '../gateway/openapi'
import type { RealtimeEdge } from '../realtime'
import { corsPolicy } from './cors'
import { toEnvelope } from './errors'
import type { Metrics } from './metrics'
import { type RequestState, requestState } from './request-state'

export interface EdgeDeps {
  config: KernelConfig
  log: Logger
  metrics: Metrics
  ipLimiter: RateLimiter
  /** Whether /api requests are served now (false while starting and once shutting down). */
  accepting: () => boolean
  /** The Socket.IO engine, served on its own path. */
  realtime?: RealtimeEdge
  /** Verifies the gateway's `x-tessera-admitted` mark on requests it forwarded. */
  tokens?: ServiceTokens
  /** The gateway role: /api/v1 of plugins hosted elsewhere, and the merged /swagger/json. */
  gateway?: Gateway
}

const REQUEST_ID = /^[\w.:-]{1,128}$/
const SECURITY_HEADERS: [string, string][] = [
  ['x-content-type-options', 'nosniff'],
  ['x-frame-options', 'DENY'],
  ['referrer-policy', 'no-referrer'],
  ['cross-origin-opener-policy', 'same-origin'],
  ['strict-transport-security', 'max-age=31536000; includeSubDomains'],
]
const API_CSP = "default-src 'none'; frame-ancestors 'none'"
const UNMATCHED = 'unmatched'

export function serveApp(app: AnyElysia, deps: EdgeDeps): Server<unknown> {
  const { config, log, metrics, ipLimiter } = deps
  const cors = corsPolicy(config.CORS_ORIGINS)
  const logRequests = log.isLevelEnabled('info')

  /**
   * The checks an /api request must pass before the app sees it; throws the refusal. A request
   * with a token for a guarded route is counted against its user by the guard (and against its IP
   * only if the token is refused); every other request is counted against its IP here.
   */
  const admit = async (request: Request, state: RequestState, guarded: boolean) => {
    if (!deps.accepting()) throw new Unavailable('the server is not ready', 'NOT_READY')
    const length = Number(request.headers.get('content-length') ?? 0)
    if (length > config.BODY_LIMIT_BYTES) throw new PayloadTooLarge(config.BODY_LIMIT_BYTES)
    // No text we store may hold NUL (PostgreSQL refuses it); refused the same way on every database.
    if (request.url.includes('%00')) throw new BadRequest('the URL contains a NUL character (%00)', 'NUL_CHARACTER')
    if (state.admitted) return
    if (!guarded || !request.headers.has('authorization')) await ipLimiter.consume(state.ip)
  }

  /**
   * A request the gateway forwarded carries its service token: the public limits were applied there,
   * and the client is the address the gateway appended last to X-Forwarded-For.
   */
  const admittedByGateway = async (request: Request) => {
    const mark = deps.tokens && request.headers.get(ADMITTED_HEADER)
    if (!mark) return false
    return deps.tokens!.verify(`Bearer ${mark}`).then(
      () => true,
      () => false,
    )
  }

  /** The client address: from X-Forwarded-For behind a trusted proxy, else the socket's peer. */
  const clientIp = (request: Request, server: Server<unknown>, admitted = false) => {
    const chain = config.TRUST_PROXY || admitted ? request.headers.get('x-forwarded-for')?.split(',') : undefined
    const forwarded = (admitted ? chain?.at(-1) : chain?.[0])?.trim()
    return forwarded || server.requestIP(request)?.address || 'unknown'
  }

  const refusal = (error: unknown, id: string) => {
    const envelope = toEnvelope(error, undefined, id)
    if (envelope.internal) log.error({ err: error, reqId: id }, 'request failed at the edge')
    return Response.json(envelope.body, { status: envelope.status, headers: envelope.headers })
  }

  /** The preflight answer, else what `serve` answers, else the refusal it threw. */
  const respond = async (request: Request, corsHeaders: Record<string, string> | undefined, id: () => string, serve: () => Promise<Response>) => {
    try {
      return cors.preflight(request, corsHeaders) ?? (await serve())
    } catch (error) {
      return refusal(error, id())
    }
  }

  const viaApp = (request: Request) => app.fetch(request)

  /** `serve` answers once the edge's checks passed: the app, or for the gateway's routes the gateway. */
  const handler = (template: string, guarded: boolean, serve: (request: Request, state: RequestState) => Response | Promise<Response> = viaApp) => async (request: Request, server: Server<unknown>) => {
    const incoming = request.headers.get('x-request-id')
    const id = incoming !== null && REQUEST_ID.test(incoming) ? incoming : Bun.randomUUIDv7()
    let ip: string | undefined
    const state: RequestState = {
      id,
      start: performance.now(),
      get ip() {
        return (ip ??= clientIp(request, server, state.admitted))
      },
    }
    requestState.set(request, state)
    const url = request.url
    const api = url.startsWith('/api/', url.indexOf('/', 8))
    const corsHeaders = cors.headersFor(request)

    // A caller's W3C trace context carries on into the calls this request makes (and the log line).
    const traceparent = validTraceparent(request.headers.get('traceparent'))
    let response = await respond(request, corsHeaders, () => id, async () => {
      if (api && request.headers.has(ADMITTED_HEADER)) state.admitted = await admittedByGateway(request)
      if (api) await admit(request, state, guarded)
      return traceparent ? callScope.run({ traceparent }, () => serve(request, state)) : serve(request, state)
    })

    try {
      response.headers.set('x-request-id', id)
    } catch {
      // A shared, immutable response (a static file, say) is copied before it is decorated.
      response = new Response(response.body, response)
      response.headers.set('x-request-id', id)
    }
    const headers = response.headers
    for (const [k, v] of SECURITY_HEADERS) headers.set(k, v)
    if (api) headers.set('content-security-policy', API_CSP)
    if (corsHeaders) for (const k in corsHeaders) headers.set(k, corsHeaders[k])

    const seconds = (performance.now() - state.start) / 1000
    metrics.observe(request.method, template, response.status, seconds)
    if (logRequests)
      log.info({ reqId: id, method: request.method, route: template, status: response.status, ms: Math.round(seconds * 1e4) / 10, traceparent }, 'request')
    return response
  }

  /**
   * The engine's requests (handshakes, long-polling, WebSocket upgrades). New sessions wait for
   * readiness like /api and count against the caller's IP; polling bodies are bounded before the
   * engine reads them (it would buffer them whole). Not access-logged: a polling client makes a
   * request every ping interval.
   */
  const realtimeHandler = (realtime: RealtimeEdge) => async (request: Request, server: Server<unknown>) => {
    const start = performance.now()
    const corsHeaders = cors.headersFor(request)
    const response = await respond(request, corsHeaders, () => Bun.randomUUIDv7(), async () => {
      const query = new URL(request.url).searchParams
      if (!query.has('sid')) {
        if (!deps.accepting()) throw new Unavailable('the server is not ready', 'NOT_READY')
        await ipLimiter.consume(clientIp(request, server))
      }
      if (!realtime.polling && query.get('transport') === 'polling')
        throw new BadRequest('long-polling is disabled here; connect with transports: ["websocket"]', 'POLLING_DISABLED')
      if (request.method === 'POST' && !(Number(request.headers.get('content-length') ?? Infinity) <= realtime.maxMessageBytes))
        throw new PayloadTooLarge(realtime.maxMessageBytes)
      return realtime.handle(request, server)
    })
    for (const [k, v] of SECURITY_HEADERS) response.headers.set(k, v)
    if (corsHeaders) for (const k in corsHeaders) response.headers.set(k, corsHeaders[k])
    const upgraded = response.status === 200 && request.headers.get('upgrade')?.toLowerCase() === 'websocket'
    metrics.observe(request.method, realtime.path, upgraded ? 101 : response.status, (performance.now() - start) / 1000)
    return response
  }

  // One native route per template and method, so the template is known without matching again.
  const routes: Record<string, Record<string, ReturnType<typeof handler>> | ReturnType<typeof handler>> = {}
  for (const route of app.routes) {
    if (!/^[A-Z]+$/.test(route.method) || route.method === 'ALL') continue
    // The guard (router.ts) marks the routes it protects with the bearer security requirement.
    const guarded = Boolean((route.hooks as { detail?: { security?: unknown[] } })?.detail?.security?.length)
    ;((routes[route.path] ??= {}) as Record<string, ReturnType<typeof handler>>)[route.method] = handler(route.path, guarded)
  }
  if (deps.realtime) routes[deps.realtime.path] = realtimeHandler(deps.realtime)
  if (deps.gateway) {
    const gateway = deps.gateway
    // Below every exact and parameterised route of the plugins hosted here, which Bun matches first.
    // Treated as guarded: the gateway counts a request with a token against its user, not the IP.
    routes['/api/v1/*'] = handler('/api/v1/*', true, (request, state) => {
      const plugin = gateway.remotePlugin(request.url)
      return plugin ? gateway.forward(request, plugin, state) : app.fetch(request)
    })
    const localDocument = async () => (await (await app.handle(new Request('http://local/swagger/json'))).json()) as OpenApiDocument
    routes['/swagger/json'] = { GET: handler('/swagger/json', false, async () => Response.json(await gateway.openapi(localDocument))) }
  }

  return Bun.serve({
    port: config.PORT,
    hostname: config.HOST,
    routes,
    fetch: handler(UNMATCHED, false),
    // BODY_LIMIT_BYTES is enforced here (Content-Length) and while reading (chunked) with the error
    // envelope; Bun's own limit would answer first with a bare 413, so it is set out of the way.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    // Above the Socket.IO ping interval, so idle realtime connections are not cut.
    idleTimeout: 60,
    ...(deps.realtime ? { websocket: deps.realtime.websocket } : {}),
  }) as Server<unknown>
}
