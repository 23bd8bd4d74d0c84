/**
 * The gateway role (`PLUGINS=gateway`, alone or next to plugins): `/api/v1/<plugin>/…` of a plugin
 * not hosted here goes to a live owner from the registry, and `/swagger/json` is the merged document
 * of the live plugins. It is part of the kernel, not a plugin: it has no routes of its own, only
 * the edge's, and knows nothing of any domain.
 *
 * Tokens and rate limits are checked once, here: a Bearer token is verified (401 without contacting
 * the owner) and counted against its user, other requests against the client IP. The owner receives
 * the original Authorization header (its guards verify it as always: same JWT_SECRET, same
 * revocation store) plus `x-tessera-admitted`, a service token that tells its edge the public limits
 * were already applied, so a request is never counted twice.
 */
import type { Logger } from 'pino'
import { NotFound, PayloadTooLarge, Unavailable } from '../../shared/errors'
import type { RateLimiter } from '../cache'
import { OwnerCircuits } from '../calls/owners'
import type { ServiceTokens } from '../calls/service-token'
import type { Identity } from '../http/identity'
import type { PluginMetrics } from '../http/metrics'
import type { RequestState } from '../http/request-state'
import type { Registry } from '../registry'
import { mergeDocuments, type OpenApiDocument } from './openapi'

/** Set by the gateway on what it forwards: a service token saying the public limits were applied. */
export const ADMITTED_HEADER = 'x-tessera-admitted'
/** The service-token subject of forwarded requests. */
export const GATEWAY_CALLER = 'gateway'

/** Headers of one connection, never forwarded (RFC 9110 §7.6.1), plus those the gateway sets itself. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length', ADMITTED_HEADER])
const OPENAPI_CACHE_MS = 2_000
/** How old the list of guarded routes may get before it is re-read (in the background) from the owners' documents. */
const ROUTES_REFRESH_MS = 15_000
const OPENAPI_FETCH_TIMEOUT_MS = 1_000

/** The owner did not answer (connection refused, or a GET/HEAD failed): another owner may take the request. */
class Refused extends Unavailable {}
/** The owner failed mid-way (reset, timeout) on a request that may have changed something: it is not sent again. */
class Broken extends Unavailable {}

export interface GatewayDeps {
  registry: Registry
  identity: Identity
  tokens: ServiceTokens
  ipLimiter: RateLimiter
  userLimiter: RateLimiter
  /** Plugins hosted in this process: their requests go to the local app. */
  hosted: string[]
  /** Every plugin of the image (discovered folders): a known plugin with no live owner is a 503, anything else a 404. */
  known: string[]
  breakerFailures: number
  halfOpenMs: number
  /** Longest wait for an owner's response headers. */
  timeoutMs: number
  bodyLimitBytes: number
  metrics: PluginMetrics
  log: Logger
}

export class Gateway {
  private readonly owners: OwnerCircuits
  private readonly proxied
  private readonly open
  private remote: { at: number; parts: Promise<DocumentPart[]> } | undefined
  /** Per plugin, its operations as the owners' documents declare them: which need a token. */
  private operations = new Map<string, { at: number; list: Operation[] }>()

  constructor(private readonly deps: GatewayDeps) {
    this.proxied = deps.metrics.counter('proxied_total', 'Requests the gateway forwarded or refused, by plugin and outcome (2xx, 4xx, 5xx, unauthorized, unavailable)', ['plugin', 'outcome'])
    this.open = deps.metrics.gauge('circuit_open', 'Whether the gateway circuit to an owner URL is open (1) or not (0)', ['owner'])
    this.owners = new OwnerCircuits(deps.registry, {
      breakerFailures: deps.breakerFailures,
      halfOpenMs: deps.halfOpenMs,
      isFailure: (e) => e instanceof Refused || e instanceof Broken,
      tryNext: (e) => e instanceof Refused,
      onCircuit: (owner, open) => this.open.set({ owner }, open ? 1 : 0),
      log: deps.log,
    })
  }

  /** The plugin an /api/v1 URL names when this process does not host it (undefined: the local app answers). */
  remotePlugin(url: string): string | undefined {
    const pathname = pathOnly(pathAndQuery(url))
    const plugin = pathname.slice(8, pathname.indexOf('/', 8) >>> 0)
    if (this.deps.hosted.includes(plugin)) return undefined
    const known = this.operations.get(plugin)
    if (!known || Date.now() - known.at > ROUTES_REFRESH_MS) void this.remoteParts()
    return plugin
  }

  /**
   * Whether a route needs a token, as the owner's document says; unknown (no document yet) counts as
   * guarded. A route that needs none ignores a token in every topology, so a stale one is not refused here.
   */
  private guarded(plugin: string, method: string, pathname: string): boolean {
    const known = this.operations.get(plugin)
    if (!known) return true
    const op = known.list.find((o) => o.method === method && o.pattern.test(pathname))
    return op?.guarded ?? false
  }

  /** Forwards a request for `plugin` to a live owner and streams its answer back; throws the refusal. */
  async forward(request: Request, plugin: string, state: RequestState): Promise<Response> {
    if (!this.isKnown(plugin)) throw new NotFound(`no plugin is called ${plugin}`, 'NOT_FOUND')
    try {
      const response = await this.send(request, plugin, state)
      this.proxied.inc({ plugin, outcome: `${Math.floor(response.status / 100)}xx` })
      return response
    } catch (error) {
      const status = (error as { status?: number }).status
      this.proxied.inc({ plugin, outcome: status === 401 ? 'unauthorized' : status === 503 ? 'unavailable' : String(status ?? 'error') })
      throw error
    }
  }

  private isKnown(plugin: string) {
    return this.deps.known.includes(plugin) || this.deps.registry.instances().some((i) => i.plugins.includes(plugin))
  }

  private async send(request: Request, plugin: string, state: RequestState): Promise<Response> {
    const { identity, ipLimiter, userLimiter, tokens } = this.deps
    const path = pathAndQuery(request.url)
    const authorization = request.headers.get('authorization')
    if (authorization !== null && !this.guarded(plugin, request.method, pathOnly(path))) await ipLimiter.consume(state.ip)
    else if (authorization !== null) {
      // The edge left a request with a token to us: a refused one counts against the IP, a good one against its user.
      const principal = await identity.authenticate(authorization).catch(async (error) => {
        await ipLimiter.consume(state.ip)
        throw error
      })
      await userLimiter.consume(principal.id)
    }
    const headers = forwardedHeaders(request, state)
    headers.set(ADMITTED_HEADER, await tokens.tokenFor(GATEWAY_CALLER))
    // Read once (bounded by the body limit), so a refused connection can be retried on another replica.
    const body = request.body ? await readBounded(request.body, this.deps.bodyLimitBytes) : undefined
    // A request that cannot have changed anything may go to the next replica after any transport failure.
    const safe = request.method === 'GET' || request.method === 'HEAD'
    const upstream = await this.owners.run(plugin, async (owner) => {
      // The timeout covers the wait for the response headers only; the body then streams as long as it takes.
      const abort = new AbortController()
      const timer = setTimeout(() => abort.abort(), this.deps.timeoutMs)
      try {
        return await fetch(owner + path, { method: request.method, headers, body, redirect: 'manual', decompress: false, signal: abort.signal } as RequestInit)
      } catch (error) {
        const code = (error as { code?: string }).code
        if (code === 'ECONNREFUSED' || code === 'ConnectionRefused') throw new Refused(`${plugin} is unavailable: nothing listens at its owner`, 'PLUGIN_UNAVAILABLE')
        this.deps.log.warn({ owner, plugin, err: error, reqId: state.id }, 'the owner failed to answer')
        if (abort.signal.aborted) throw new Broken(`${plugin} did not answer within ${this.deps.timeoutMs} ms`, 'UPSTREAM_TIMEOUT')
        if (safe) throw new Refused(`${plugin} failed to answer`, 'PLUGIN_UNAVAILABLE')
        throw new Broken(`${plugin} failed to answer`, 'PLUGIN_UNAVAILABLE')
      } finally {
        clearTimeout(timer)
      }
    }).catch((error) => {
      if (error instanceof Unavailable && !(error instanceof Refused) && !(error instanceof Broken)) throw new Unavailable(`${plugin} is unavailable: ${error.message}`, 'PLUGIN_UNAVAILABLE')
      throw error
    })
    // The owner's answer goes back as it is (its body streams through), minus the hop-by-hop headers.
    const out = upstream.headers
    for (const name of hopByHop(out)) out.delete(name)
    return upstream
  }

  /** The merged OpenAPI document: this process's own, plus each live plugin's paths and tags from one of its owners. */
  async openapi(local: () => Promise<OpenApiDocument>): Promise<OpenApiDocument> {
    const [own, parts] = await Promise.all([local(), this.remoteParts()])
    return mergeDocuments(own, parts)
  }

  /** Each live plugin's document, from the first of its owners that answers (a dead one is left out); cached briefly. */
  private remoteParts(): Promise<DocumentPart[]> {
    if (this.remote && Date.now() - this.remote.at < OPENAPI_CACHE_MS) return this.remote.parts
    const parts = this.fetchParts()
    this.remote = { at: Date.now(), parts }
    parts.catch(() => (this.remote = undefined))
    return parts
  }

  private async fetchParts(): Promise<DocumentPart[]> {
    const fetched = new Map<string, Promise<OpenApiDocument | undefined>>()
    const documentOf = (owner: string) => {
      let doc = fetched.get(owner)
      if (!doc) {
        doc = fetch(`${owner}/swagger/json`, { signal: AbortSignal.timeout(OPENAPI_FETCH_TIMEOUT_MS) })
          .then((r) => (r.ok ? (r.json() as Promise<OpenApiDocument>) : undefined))
          .catch(() => undefined)
        fetched.set(owner, doc)
      }
      return doc
    }
    const parts: DocumentPart[] = []
    await Promise.all(
      this.livePlugins().map(async (plugin) => {
        for (const owner of this.deps.registry.owners(plugin)) {
          const doc = await documentOf(owner)
          if (doc) return void parts.push({ plugin, doc })
        }
      }),
    )
    for (const { plugin, doc } of parts) this.operations.set(plugin, { at: Date.now(), list: operationsOf(plugin, doc) })
    return parts.sort((a, b) => a.plugin.localeCompare(b.plugin))
  }

  /** Plugins hosted elsewhere that have a ready owner now. */
  private livePlugins(): string[] {
    const names = new Set(this.deps.registry.instances().flatMap((i) => i.plugins))
    return [...names].filter((p) => !this.deps.hosted.includes(p) && this.deps.registry.owners(p).length > 0).sort()
  }

  /** For /health/ready: how many ready owners each plugin of the deployment has. */
  owned(): Record<string, number> {
    const names = new Set([...this.deps.known, ...this.deps.registry.instances().flatMap((i) => i.plugins)])
    const out: Record<string, number> = {}
    for (const p of [...names].sort()) out[p] = this.deps.hosted.includes(p) ? 1 : this.deps.registry.owners(p).length
    return out
  }
}

type DocumentPart = { plugin: string; doc: OpenApiDocument }
interface Operation {
  method: string
  pattern: RegExp
  guarded: boolean
}

/** The operations of `plugin` in an owner's document: method, path pattern, and whether a bearer token is required. */
function operationsOf(plugin: string, doc: OpenApiDocument): Operation[] {
  const prefix = `/api/v1/${plugin}`
  const list: Operation[] = []
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    if (path !== prefix && !path.startsWith(`${prefix}/`)) continue
    const pattern = new RegExp(`^${path.split(/\{[^}]+\}/).map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')).join('[^/]+')}/?$`)
    for (const [method, op] of Object.entries(item as Record<string, { security?: unknown[] }>))
      list.push({ method: method.toUpperCase(), pattern, guarded: Boolean(op?.security?.length) })
  }
  return list
}

/** The path and query of an absolute URL as received (no URL object: this runs on every proxied request). */
const pathAndQuery = (url: string) => url.slice(url.indexOf('/', url.indexOf('//') + 2))

/** The path of a path-and-query. */
const pathOnly = (path: string) => {
  const q = path.indexOf('?')
  return q < 0 ? path : path.slice(0, q)
}

/** Names a Connection header lists (besides the usual keep-alive / close): hop-by-hop too. */
function connectionListed(headers: Headers): string[] {
  const connection = headers.get('connection')
  if (connection === null) return []
  return connection
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((name) => name && name !== 'keep-alive' && name !== 'close')
}

/** The hop-by-hop headers present (those of RFC 9110 plus the ones Connection lists): never passed on, either way. */
function hopByHop(headers: Headers): string[] {
  const drop = connectionListed(headers)
  for (const name of HOP_BY_HOP) if (headers.has(name)) drop.push(name)
  return drop
}

/**
 * The client's headers minus hop-by-hop ones, with the request id and the X-Forwarded-* trio. The
 * request's own Headers are edited in place (nothing reads them after the gateway) and passed on.
 */
function forwardedHeaders(request: Request, state: RequestState): Headers {
  const headers = request.headers
  const host = headers.get('host')
  const prior = headers.get('x-forwarded-for')
  for (const name of hopByHop(headers)) headers.delete(name)
  headers.set('x-forwarded-for', prior ? `${prior}, ${state.ip}` : state.ip)
  if (!headers.has('x-forwarded-proto')) headers.set('x-forwarded-proto', request.url.startsWith('https:') ? 'https' : 'http')
  if (!headers.has('x-forwarded-host')) headers.set('x-forwarded-host', host ?? new URL(request.url).host)
  headers.set('x-request-id', state.id)
  return headers
}

/** The whole body, refusing more than `limit` bytes even without a Content-Length. */
async function readBounded(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength
    if (size > limit) throw new PayloadTooLarge(limit)
    chunks.push(chunk)
  }
  return size ? Buffer.concat(chunks) : undefined
}
