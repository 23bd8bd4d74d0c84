/**
 * The one Elysia app of a process: request ids, body rules, per-IP limits, security headers, CORS,
 * the error envelope, metrics, health, and Swagger. Plugin routers are mounted onto it by the kernel.
 */
import { cors } from '@elysiajs/cors'
import { swagger } from '@elysiajs/swagger'
import { Elysia } from 'elysia'
import type { Logger } from 'pino'
import { PayloadTooLarge, Unavailable, UnsupportedMediaType, BadRequest } from '../../shared/errors'
import type { RateLimiter } from '../cache'
import type { KernelConfig } from '../config'
import { toEnvelope } from './errors'
import type { Metrics } from './metrics'
import { requestState } from './request-state'

export interface Readiness {
  started: boolean
  accepting: boolean
  plugins: Record<string, { status: 'up' | 'down'; detail?: string }>
}

export interface AppDeps {
  config: KernelConfig
  log: Logger
  metrics: Metrics
  ipLimiter: RateLimiter
  /** Whether /api requests are served now (false while starting and once shutting down). */
  accepting: () => boolean
  readiness: () => Promise<Readiness>
  tags: { name: string; description: string }[]
  version: string
}

const REQUEST_ID = /^[\w.:-]{1,128}$/
const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
}
const API_CSP = "default-src 'none'; frame-ancestors 'none'"

/** Reads a JSON body, refusing more than `limit` bytes even when no Content-Length was sent. */
async function readJson(request: Request, limit: number): Promise<unknown> {
  const type = request.headers.get('content-type') ?? ''
  const length = Number(request.headers.get('content-length') ?? NaN)
  if (!request.body || length === 0) return undefined
  const mime = type.split(';')[0].trim().toLowerCase()
  if (mime !== 'application/json' && !mime.endsWith('+json')) throw new UnsupportedMediaType(mime)
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength
    if (size > limit) throw new PayloadTooLarge(limit)
    chunks.push(chunk)
  }
  if (size === 0) return undefined
  const text = Buffer.concat(chunks).toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    throw new BadRequest('the request body is not valid JSON', 'MALFORMED_JSON')
  }
}

type OpenApiContent = { content?: Record<string, unknown> } | undefined

/**
 * The swagger plugin lists every body as JSON, form data or text; this API reads and writes JSON
 * only (anything else is a 415), so the document handed out lists `application/json` alone.
 */
function jsonOnly(response: unknown) {
  if (!response || typeof response !== 'object' || !('openapi' in response)) return
  const doc = JSON.parse(JSON.stringify(response)) as { paths?: Record<string, Record<string, { requestBody?: OpenApiContent; responses?: Record<string, OpenApiContent> }>> }
  for (const operations of Object.values(doc.paths ?? {}))
    for (const op of Object.values(operations))
      for (const part of [op.requestBody, ...Object.values(op.responses ?? {})])
        if (part?.content?.['application/json']) part.content = { 'application/json': part.content['application/json'] }
  return doc
}

export function createApp(deps: AppDeps) {
  const { config, log, metrics, ipLimiter } = deps
  const allowAnyOrigin = config.CORS_ORIGINS.includes('*')

  // normalize: false, so a schema means what it says: with `additionalProperties: false` an unknown
  // property is a 422 rather than silently dropped. Handlers map their responses explicitly.
  return new Elysia({ name: 'tessera.app', normalize: false })
    .onRequest(async ({ request, set, server }) => {
      const incoming = request.headers.get('x-request-id')
      const id = incoming && REQUEST_ID.test(incoming) ? incoming : Bun.randomUUIDv7()
      const forwarded = config.TRUST_PROXY ? request.headers.get('x-forwarded-for')?.split(',')[0]?.trim() : undefined
      const ip = forwarded || server?.requestIP(request)?.address || 'unknown'
      requestState.set(request, { id, start: performance.now(), ip })
      Object.assign(set.headers, SECURITY_HEADERS)
      set.headers['x-request-id'] = id
      const path = request.url.slice(request.url.indexOf('/', 8))
      if (!path.startsWith('/api/')) return
      set.headers['content-security-policy'] = API_CSP
      if (!deps.accepting()) throw new Unavailable('the server is not ready', 'NOT_READY')
      const length = Number(request.headers.get('content-length') ?? 0)
      if (length > config.BODY_LIMIT_BYTES) throw new PayloadTooLarge(config.BODY_LIMIT_BYTES)
      await ipLimiter.consume(ip)
    })
    .use(
      cors({
        origin: allowAnyOrigin ? true : config.CORS_ORIGINS,
        methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
        allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'x-request-id'],
        exposeHeaders: ['x-request-id', 'retry-after', 'idempotent-replayed'],
        credentials: false,
        maxAge: 600,
      }),
    )
    .onParse(({ request }) => readJson(request, config.BODY_LIMIT_BYTES))
    .onError(async ({ error, code, request, set }) => {
      const state = requestState.get(request)
      if (state.releaseIdempotencyKey) {
        const release = state.releaseIdempotencyKey
        state.releaseIdempotencyKey = undefined
        await release().catch((err) => log.warn({ err, reqId: state.id }, 'could not free an Idempotency-Key'))
      }
      const envelope = toEnvelope(error, code, state.id)
      if (envelope.internal) log.error({ err: error, reqId: state.id, url: request.url }, 'request failed')
      set.status = envelope.status
      Object.assign(set.headers, envelope.headers)
      return envelope.body
    })
    .onAfterResponse(({ request, route, set }) => {
      const state = requestState.get(request)
      const status = typeof set.status === 'number' ? set.status : 200
      const seconds = (performance.now() - state.start) / 1000
      metrics.observe(request.method, route || 'unmatched', status, seconds)
      if (log.isLevelEnabled('info'))
        log.info({ reqId: state.id, method: request.method, route, status, ms: Math.round(seconds * 1e4) / 10 }, 'request')
    })
    .use(
      // The local hook only touches the two documentation routes of the swagger plugin.
      new Elysia({ name: 'tessera.docs' }).onAfterHandle(({ response }) => jsonOnly(response)).use(
        swagger({
          path: '/swagger',
          exclude: ['/swagger', '/swagger/json'],
          documentation: {
            info: { title: 'Tessera API', version: deps.version, description: 'Every route of the plugins hosted by this process.' },
            tags: [{ name: 'system', description: 'health, metrics' }, ...deps.tags],
            components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
          },
        }),
      ),
    )
    .group('/health', { detail: { tags: ['system'] } }, (health) =>
      health
        .get('/live', () => ({ status: 'up' }), { detail: { summary: 'The process is up' } })
        .get(
          '/startup',
          async ({ set }) => {
            const r = await deps.readiness()
            set.status = r.started ? 200 : 503
            return { status: r.started ? 'started' : 'starting' }
          },
          { detail: { summary: 'Start-up has finished' } },
        )
        .get(
          '/ready',
          async ({ set }) => {
            const r = await deps.readiness()
            const ready = r.started && r.accepting && Object.values(r.plugins).every((p) => p.status === 'up')
            set.status = ready ? 200 : 503
            return { status: ready ? 'ready' : 'not ready', plugins: r.plugins }
          },
          { detail: { summary: 'Every hosted plugin and its dependencies are ready' } },
        ),
    )
    .get(
      '/metrics',
      async ({ set }) => {
        set.headers['content-type'] = metrics.registry.contentType
        return metrics.registry.metrics()
      },
      { detail: { tags: ['system'], summary: 'Prometheus metrics' } },
    )
}

export type App = ReturnType<typeof createApp>
