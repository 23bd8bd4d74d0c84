/**
 * The one Elysia app of a process: JSON bodies within the size limit, the error envelope, health,
 * metrics and Swagger. Plugin routers are mounted onto it by the kernel; edge.ts serves it.
 */
import { swagger } from '@elysiajs/swagger'
import { Elysia } from 'elysia'
import type { Logger } from 'pino'
import { BadRequest, PayloadTooLarge, UnsupportedMediaType } from '../../shared/errors'
import type { KernelConfig } from '../config'
import { toEnvelope } from './errors'
import type { Metrics } from './metrics'
import { requestState } from './request-state'

export interface Readiness {
  started: boolean
  accepting: boolean
  plugins: Record<string, { status: 'up' | 'down'; detail?: string }>
  /** With the gateway role: how many ready owners each plugin of the deployment has now. */
  owners?: Record<string, number>
}

export interface AppDeps {
  config: KernelConfig
  log: Logger
  metrics: Metrics
  readiness: () => Promise<Readiness>
  tags: { name: string; description: string }[]
  version: string
}

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
  const raw = Buffer.concat(chunks)
  requestState.get(request).rawBody = raw
  const text = raw.toString('utf8')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new BadRequest('the request body is not valid JSON', 'MALFORMED_JSON')
  }
  // No text we store may hold NUL (PostgreSQL refuses it); refused the same way on every database.
  if (text.includes('\\u0000') && JSON_NUL.test(text)) throw new BadRequest('the request body contains a NUL character (\\u0000)', 'NUL_CHARACTER')
  return value
}

/** A JSON escape of NUL (backslash, u0000), not an escaped backslash followed by the text u0000. */
const JSON_NUL = /(?<!\\)(?:\\\\)*\\u0000/

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
  const { config, log, metrics } = deps

  // normalize: false, so a schema means what it says: with `additionalProperties: false` an unknown
  // property is a 422 rather than silently dropped. Handlers map their responses explicitly.
  return new Elysia({ name: 'tessera.app', normalize: false })
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
            return { status: ready ? 'ready' : 'not ready', plugins: r.plugins, ...(r.owners ? { owners: r.owners } : {}) }
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
