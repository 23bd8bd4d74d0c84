/**
 * What every plugin router starts from: the route options the kernel understands.
 * - `auth: true | ['manager', 'admin']`: a valid access token is required (401), with one of these
 *   roles (403); the principal is handed to the handler; the caller's per-user budget is spent (429).
 * - `creates: true`: the route creates something: it answers 201 and honours `Idempotency-Key`
 *   (the same key and body replays the first answer; the same key with another body is a 422).
 */
import { Elysia } from 'elysia'
import { Conflict, Forbidden, Invalid } from '../../shared/errors'
import type { Cache, RateLimiter } from '../cache'
import type { Identity, Principal } from './identity'
import { requestState } from './request-state'

/** The bytes of the request's JSON body as received (empty without a body), for signature checks. */
export const rawBody = (request: Request): Uint8Array => requestState.get(request).rawBody ?? new Uint8Array()

export interface RouterDeps {
  identity: Identity
  userLimiter: RateLimiter
  ipLimiter: RateLimiter
  cache: Cache
  idempotencyTtlSeconds: number
}

interface IdempotencyRecord {
  state: 'pending' | 'done'
  hash: string
  status?: number
  body?: unknown
}

const sha256 = (text: string) => new Bun.CryptoHasher('sha256').update(text).digest('hex')
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/
/** A request still running after this is presumed dead (e.g. the process crashed), freeing its key. */
const PENDING_TTL_SECONDS = 120

export function routerBase(deps: RouterDeps) {
  const { identity, userLimiter, ipLimiter, cache } = deps

  const idempotencyRecordKey = (request: Request, key: string) => {
    const caller = request.headers.get('authorization') ?? `ip:${requestState.get(request).ip}`
    return `idem:${sha256(`${caller}\n${request.method}\n${new URL(request.url).pathname}\n${key}`)}`
  }

  return new Elysia({ name: 'tessera.router' }).macro({
    auth: (roles: true | readonly string[]) => ({
      detail: { security: [{ bearer: [] }] },
      // In `transform`, which runs before validation: a caller without a valid token gets 401 (not a
      // 422 that describes the route's schema), and a caller without the role gets 403.
      async transform({ request }) {
        const state = requestState.get(request)
        const principal = await identity.authenticate(request.headers.get('authorization')).catch(async (error) => {
          // A refused token is counted against the caller's IP, which the edge left to the guard.
          if (request.headers.has('authorization') && !state.admitted) await ipLimiter.consume(state.ip)
          throw error
        })
        if (roles !== true && !roles.some((r) => principal.roles.includes(r)))
          throw new Forbidden(`this needs one of the roles: ${roles.join(', ')}`)
        // The gateway counted a forwarded request against its user already.
        if (!state.admitted) await userLimiter.consume(principal.id)
        state.principal = principal
      },
      resolve({ request }): { principal: Principal } {
        return { principal: requestState.get(request).principal as Principal }
      },
    }),
    creates: (enabled: boolean) => {
      if (!enabled) return {}
      return {
        detail: {
          parameters: [
            {
              in: 'header',
              name: 'Idempotency-Key',
              required: false,
              description: 'Retry-safe creation: the same key and body return the first answer; another body is a 422.',
              schema: { type: 'string', maxLength: 255 },
            },
          ],
        },
        async beforeHandle({ request, body, set }) {
          set.status = 201
          const key = request.headers.get('idempotency-key')
          if (key === null) return
          if (!IDEMPOTENCY_KEY.test(key)) throw new Invalid('Idempotency-Key must be 1-255 visible ASCII characters', undefined, 'INVALID_IDEMPOTENCY_KEY')
          const recordKey = idempotencyRecordKey(request, key)
          const hash = sha256(JSON.stringify(body ?? null))
          const pending: IdempotencyRecord = { state: 'pending', hash }
          if (await cache.add(recordKey, pending, PENDING_TTL_SECONDS)) {
            const state = requestState.get(request)
            state.idempotency = { recordKey, hash }
            // A failed attempt changed nothing, so the key is freed for the retry. The app's error
            // handler calls this: it answers before any route-level error hook could run.
            state.releaseIdempotencyKey = () => cache.del(recordKey)
            return
          }
          const first = await cache.get<IdempotencyRecord>(recordKey)
          if (!first) throw new Conflict('a request with this Idempotency-Key just finished; retry', 'IDEMPOTENCY_IN_PROGRESS')
          if (first.hash !== hash) throw new Invalid('this Idempotency-Key was used with another request body', undefined, 'IDEMPOTENCY_KEY_REUSED')
          if (first.state === 'pending') throw new Conflict('a request with this Idempotency-Key is in progress', 'IDEMPOTENCY_IN_PROGRESS')
          set.status = first.status ?? 201
          set.headers['idempotent-replayed'] = 'true'
          return first.body as never
        },
        async afterHandle({ request, response, set }) {
          const state = requestState.get(request)
          if (!state.idempotency) return
          const { recordKey, hash } = state.idempotency
          const done: IdempotencyRecord = { state: 'done', hash, status: Number(set.status ?? 201), body: response }
          await cache.set(recordKey, done, deps.idempotencyTtlSeconds)
          state.releaseIdempotencyKey = undefined
        },
      }
    },
  })
}

export type RouterBase = ReturnType<typeof routerBase>

/** A plugin's router: its prefix and OpenAPI tag, plus the kernel's route options. */
export function pluginRouter(base: RouterBase, plugin: string) {
  return new Elysia({ name: `tessera.plugin.${plugin}`, prefix: `/api/v1/${plugin}`, detail: { tags: [plugin] } }).use(base)
}

export type PluginRouter = ReturnType<typeof pluginRouter>
