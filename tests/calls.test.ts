/**
 * Remote calls between plugins hosted in different processes (issue 5, item 3), black-box: real
 * processes, real HTTP. One process hosts inventory (+ auth), another only the `storefront` fixture,
 * which calls inventory through ctx.call and reports what came back; static routes tell it where
 * inventory lives. The same calls made inside one process give the reference answers.
 * A scripted fake owner (raw TCP) shows what travels with a call and which failures are retried.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { Socket } from 'bun'
import { callEndpoint } from '../kernel/calls/endpoint'
import { LocalTransport } from '../kernel/calls/local'
import { internalSecret, ServiceTokens } from '../kernel/calls/service-token'
import { memoryCache } from '../kernel/cache/memory'
import { loadKernelConfig } from '../kernel/config'
import { createApp } from '../kernel/http/app'
import { serveApp } from '../kernel/http/edge'
import { Metrics } from '../kernel/http/metrics'
import { createLogger } from '../kernel/log'
import { stopChild } from '../scripts/bench/children'
import { freePort } from '../scripts/free-port'
import { adminToken, baseEnv, type ChildServer, client, eventually, expectError, expectStatus, isolatedStore, JWT_SECRET, spawnServer, variant } from './harness'

const CALLS = '/internal/v1/calls'
const tokens = new ServiceTokens(internalSecret({ JWT_SECRET }))

/** What `storefront` reports for one ctx.call made in the process at `url`. */
async function callVia(url: string, action: string, input: unknown, options: { timeoutMs?: number; idempotencyKey?: string; headers?: Record<string, string> } = {}) {
  const { headers, ...rest } = options
  const r = await client(url).post('/api/v1/storefront/call', { action, input, ...rest }, undefined, headers)
  expectStatus(r, 200)
  return r.body as { ok: boolean; result?: any; kind?: string; status?: number; code?: string; message?: string; details?: unknown; ms: number }
}

/** A POST straight to a process's internal call endpoint. */
const internal = (url: string, action: string, body: unknown, headers: Record<string, string> = {}) =>
  client(url).post(`${CALLS}/${action}`, body, undefined, headers)

const sameAnswer = (a: Awaited<ReturnType<typeof callVia>>) => ({ ...a, ms: undefined })

describe(`remote calls over static routes (${variant})`, () => {
  const store = isolatedStore()
  let ownerPort: number
  let owner: ChildServer // auth + inventory + storefront: its calls are local
  let caller: ChildServer // storefront only: its calls go over HTTP
  let ownerEnv: Record<string, string>
  let sku: string

  beforeAll(async () => {
    ownerPort = await freePort()
    // A low per-IP limit shows that calls between processes are not counted as public requests.
    ownerEnv = baseEnv({ ...store.env, PORT: String(ownerPort), PLUGINS: 'auth,inventory,storefront', RATE_LIMIT_IP_PER_MIN: '30' })
    owner = await spawnServer(ownerEnv)
    const ownerUrl = `http://127.0.0.1:${ownerPort}`
    caller = await spawnServer(
      baseEnv({ ...store.env, PLUGINS: 'storefront', PLUGIN_ROUTES: `inventory=${ownerUrl},auth=${ownerUrl}`, CALL_BREAKER_HALF_OPEN_MS: '300' }),
    )
    const admin = await adminToken(owner.url)
    const api = client(owner.url)
    sku = `SKU-${Date.now().toString(36)}`
    expectStatus(await api.post('/api/v1/inventory/warehouses', { code: 'W1', name: 'One' }, admin), 201)
    expectStatus(await api.post('/api/v1/inventory/items', { sku, name: 'A thing' }, admin), 201)
    expectStatus(await api.post('/api/v1/inventory/adjustments', { sku, warehouse: 'W1', delta: 10, reason: 'initial' }, admin), 201)
  }, 30_000)
  afterAll(async () => {
    await Promise.all([owner && stopChild(owner.proc, 5000), caller && stopChild(caller.proc, 5000)])
    await store.cleanup()
  })

  test('a remote call returns what the same call returns locally', async () => {
    const local = await callVia(owner.url, 'inventory.getStock', { sku })
    const remote = await callVia(caller.url, 'inventory.getStock', { sku })
    expect(local.ok).toBe(true)
    expect(local.result).toEqual({ items: [{ sku, warehouse: 'W1', onHand: 10, reserved: 0, available: 10 }] })
    expect(remote).toEqual({ ...local, ms: remote.ms })
  })

  test('a remote reservation, commit and repeated commit behave as local ones', async () => {
    const reserved = await callVia(caller.url, 'inventory.reserve', { sku, warehouse: 'W1', quantity: 2, reference: 'order-1' })
    expect(reserved.ok).toBe(true)
    expect(reserved.result.status).toBe('active')
    const committed = await callVia(caller.url, 'inventory.commit', { id: reserved.result.id })
    const again = await callVia(caller.url, 'inventory.commit', { id: reserved.result.id })
    expect(committed.result.status).toBe('committed')
    expect(again.result).toEqual(committed.result)
    const stock = await callVia(owner.url, 'inventory.getStock', { sku })
    expect(stock.result.items[0]).toEqual({ sku, warehouse: 'W1', onHand: 8, reserved: 0, available: 8 })
  })

  test('a remote Conflict arrives as the same kind and code (OUT_OF_STOCK) as a local one', async () => {
    const input = { sku, warehouse: 'W1', quantity: 1000, reference: 'too-much' }
    const local = await callVia(owner.url, 'inventory.reserve', input)
    const remote = await callVia(caller.url, 'inventory.reserve', input)
    expect(local).toMatchObject({ ok: false, kind: 'Conflict', status: 409, code: 'OUT_OF_STOCK' })
    expect(sameAnswer(remote)).toEqual(sameAnswer(local))
  })

  test('a remote NotFound arrives as NotFound', async () => {
    const input = { id: 'no-such-reservation' }
    const local = await callVia(owner.url, 'inventory.commit', input)
    const remote = await callVia(caller.url, 'inventory.commit', input)
    expect(local).toMatchObject({ ok: false, kind: 'NotFound', status: 404 })
    expect(sameAnswer(remote)).toEqual(sameAnswer(local))
  })

  test("input that breaks the contract is refused as Invalid, by the caller and by the callee's own check", async () => {
    const bad = { sku, warehouse: 'W1', quantity: -1, reference: 'x' }
    const viaCaller = await callVia(caller.url, 'inventory.reserve', bad)
    expect(viaCaller).toMatchObject({ ok: false, kind: 'Invalid', status: 422, code: 'VALIDATION_FAILED' })
    // A caller that skipped its check (another version, say) meets the same check at the owner.
    const r = await internal(owner.url, 'inventory.reserve', bad, { authorization: `Bearer ${await tokens.tokenFor('storefront')}` })
    expectError(r, 422, 'VALIDATION_FAILED')
    expect(r.body.error.message).toBe(viaCaller.message)
    expect(r.body.error.details).toEqual(viaCaller.details)
  })

  test('the internal endpoint refuses requests without a valid service token (401)', async () => {
    const input = { sku }
    expectError(await internal(owner.url, 'inventory.getStock', input), 401)
    expectError(await internal(owner.url, 'inventory.getStock', input, { authorization: 'Bearer not-a-token' }), 401)
    // A user's access token (signed with JWT_SECRET itself) is not a service token.
    expectError(await internal(owner.url, 'inventory.getStock', input, { authorization: `Bearer ${await adminToken(owner.url)}` }), 401)
    const foreign = new ServiceTokens('another-deployment-secret-0123456789abcdef')
    expectError(await internal(owner.url, 'inventory.getStock', input, { authorization: `Bearer ${await foreign.tokenFor('storefront')}` }), 401)
    const ok = await internal(owner.url, 'inventory.getStock', input, { authorization: `Bearer ${await tokens.tokenFor('storefront')}` })
    expectStatus(ok, 200)
    expect(ok.body.result.items[0].sku).toBe(sku)
  })

  test('calls between processes are not rate-limited like public requests', async () => {
    const authorization = `Bearer ${await tokens.tokenFor('storefront')}`
    const answers = await Promise.all(Array.from({ length: 40 }, () => internal(owner.url, 'inventory.getStock', { sku }, { authorization })))
    expect(answers.map((a) => a.status)).toEqual(Array(40).fill(200))
  })

  test('an action this process does not host is refused as NOT_HOSTED, so the caller can try another owner', async () => {
    const r = await internal(caller.url, 'inventory.getStock', { sku }, { authorization: `Bearer ${await tokens.tokenFor('storefront')}` })
    expectError(r, 503, 'NOT_HOSTED')
  })

  test('the internal endpoint is not in the public OpenAPI document', async () => {
    const doc = await client(owner.url).get('/swagger/json')
    expectStatus(doc, 200)
    expect(Object.keys(doc.body.paths).some((p) => p.startsWith('/internal'))).toBe(false)
    expect(Object.keys(doc.body.paths)).toContain('/api/v1/storefront/call')
  })

  test("the caller's traceparent arrives at the callee (same trace, the call's own span)", async () => {
    const traceId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex')
    const traceparent = `00-${traceId}-00f067aa0ba902b7-01`
    expect((await callVia(caller.url, 'inventory.getStock', { sku }, { headers: { traceparent } })).ok).toBe(true)
    const line = await eventually(async () => owner.output().split('\n').find((l) => l.includes(CALLS) && l.includes(traceId)))
    expect(line).toBeDefined()
    const seen = JSON.parse(line!).traceparent as string
    expect(seen).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`))
    expect(seen).not.toBe(traceparent)
  })

  test('owner killed with SIGKILL: calls fail fast as Unavailable, and succeed again once it is back', async () => {
    owner.proc.kill('SIGKILL')
    await owner.proc.exited
    const first = await callVia(caller.url, 'inventory.getStock', { sku })
    expect(first).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
    // The circuit is open now: no connection attempts, no retries, no waiting.
    for (const action of ['inventory.getStock', 'inventory.reserve'] as const) {
      const r = await callVia(caller.url, action, action === 'inventory.getStock' ? { sku } : { sku, warehouse: 'W1', quantity: 1, reference: 'r' })
      expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
      expect(r.ms).toBeLessThan(50)
    }
    const circuit = async () => (await client(caller.url).get('/metrics')).body.match(/^calls_circuit_open\{owner="([^"]+)"\} (\d)$/m)?.slice(1)
    expect(await circuit()).toEqual([`http://127.0.0.1:${ownerPort}`, '1'])
    owner = await spawnServer(ownerEnv)
    const t0 = Date.now()
    const back = await eventually(async () => (await callVia(caller.url, 'inventory.getStock', { sku })).ok, 5_000)
    expect(back).toBe(true)
    expect(Date.now() - t0).toBeLessThan(5_000)
    expect(await circuit()).toEqual([`http://127.0.0.1:${ownerPort}`, '0'])
  })
})

// ---------------------------------------------------------------------------
// A scripted owner: what a call carries, and which failures are retried
// ---------------------------------------------------------------------------

type Behaviour = 'drop' | 'hang' | { status: number; body: unknown }
interface Seen {
  path: string
  headers: Record<string, string>
  body: unknown
}

/** Speaks just enough HTTP/1.1 to answer each request as `plan` says (then `fallback`). */
function fakeOwner() {
  const seen: Seen[] = []
  const plan: Behaviour[] = []
  const fallback: Behaviour = { status: 200, body: { result: { items: [] } } }
  const hanging: Socket<{ buf: string }>[] = []
  const server = Bun.listen<{ buf: string }>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(socket) {
        socket.data = { buf: '' }
      },
      data(socket, chunk) {
        socket.data.buf += chunk.toString()
        const end = socket.data.buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const [start, ...lines] = socket.data.buf.slice(0, end).split('\r\n')
        const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
        const body = socket.data.buf.slice(end + 4)
        if (Buffer.byteLength(body) < Number(headers['content-length'] ?? 0)) return
        seen.push({ path: start.split(' ')[1], headers, body: JSON.parse(body) })
        const next = plan.shift() ?? fallback
        if (next === 'drop') return void socket.end()
        if (next === 'hang') return void hanging.push(socket)
        const json = JSON.stringify(next.body)
        socket.end(
          `HTTP/1.1 ${next.status} X\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`,
        )
      },
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}`,
    seen,
    plan,
    reset() {
      seen.length = 0
      plan.length = 0
      for (const s of hanging.splice(0)) s.end()
    },
    stop: () => server.stop(true),
  }
}

const envelope = (code: string, message = code) => ({ error: { code, message, requestId: 'fake' } })

describe(`what a remote call carries, and its retries (${variant})`, () => {
  const store = isolatedStore()
  const owner = fakeOwner()
  let caller: ChildServer
  beforeAll(async () => {
    caller = await spawnServer(
      baseEnv({ ...store.env, PLUGINS: 'storefront', PLUGIN_ROUTES: `inventory=${owner.url}`, CALL_RETRIES: '2', CALL_BREAKER_FAILURES: '1000' }),
    )
  }, 20_000)
  afterAll(async () => {
    owner.reset()
    owner.stop()
    if (caller) await stopChild(caller.proc, 5000)
    await store.cleanup()
  })
  const reserve = { sku: 'S', warehouse: 'W', quantity: 1, reference: 'r' }

  test('a call carries a service token naming the caller, the time left, the traceparent and the idempotency key', async () => {
    owner.reset()
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const r = await callVia(caller.url, 'inventory.getStock', { sku: 'S' }, { timeoutMs: 2000, idempotencyKey: 'key-1', headers: { traceparent } })
    expect(r).toMatchObject({ ok: true, result: { items: [] } })
    const [call] = owner.seen
    expect(call.path).toBe(`${CALLS}/inventory.getStock`)
    expect(call.body).toEqual({ sku: 'S' })
    expect(await tokens.verify(call.headers.authorization)).toBe('storefront')
    const left = Number(call.headers['x-call-timeout-ms'])
    expect(left).toBeGreaterThan(1500)
    expect(left).toBeLessThanOrEqual(2000)
    expect(call.headers['idempotency-key']).toBe('key-1')
    expect(call.headers.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/)
  })

  test('a call made outside any trace starts one', async () => {
    owner.reset()
    await callVia(caller.url, 'inventory.getStock', {})
    expect(owner.seen[0].headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
  })

  test('a non-idempotent action is not retried after a transport failure', async () => {
    owner.reset()
    owner.plan.push('drop')
    const r = await callVia(caller.url, 'inventory.reserve', reserve)
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
    expect(owner.seen.length).toBe(1)
  })

  test('a non-idempotent action is not retried after a 503 from its handler', async () => {
    owner.reset()
    owner.plan.push({ status: 503, body: envelope('UNAVAILABLE', 'the database is away') })
    const r = await callVia(caller.url, 'inventory.reserve', reserve)
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503, code: 'UNAVAILABLE', message: 'the database is away' })
    expect(owner.seen.length).toBe(1)
  })

  test('an idempotent action is retried after a transport failure and a 503', async () => {
    owner.reset()
    owner.plan.push('drop', { status: 503, body: envelope('UNAVAILABLE') })
    const r = await callVia(caller.url, 'inventory.getStock', { sku: 'S' })
    expect(r).toMatchObject({ ok: true, result: { items: [] } })
    expect(owner.seen.length).toBe(3)
  })

  test('retries stop after CALL_RETRIES extra attempts', async () => {
    owner.reset()
    owner.plan.push(...Array(5).fill({ status: 503, body: envelope('UNAVAILABLE') }))
    const r = await callVia(caller.url, 'inventory.getStock', {})
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
    expect(owner.seen.length).toBe(3)
  })

  test('a request the owner refused at the door (NOT_READY) may go again even for a non-idempotent action', async () => {
    owner.reset()
    owner.plan.push({ status: 503, body: envelope('NOT_READY') })
    const r = await callVia(caller.url, 'inventory.reserve', reserve)
    expect(r.ok).toBe(true)
    expect(owner.seen.length).toBe(2)
  })

  test('error envelopes become the shared kinds with their codes and details', async () => {
    const cases: [Behaviour, Record<string, unknown>][] = [
      [{ status: 409, body: envelope('OUT_OF_STOCK') }, { kind: 'Conflict', status: 409, code: 'OUT_OF_STOCK' }],
      [{ status: 404, body: envelope('NOT_FOUND') }, { kind: 'NotFound', status: 404, code: 'NOT_FOUND' }],
      [{ status: 422, body: { error: { code: 'VALIDATION_FAILED', message: 'no', details: [{ path: '/x', message: 'bad' }] } } }, { kind: 'Invalid', status: 422, details: [{ path: '/x', message: 'bad' }] }],
      [{ status: 403, body: envelope('FORBIDDEN') }, { kind: 'Forbidden', status: 403 }],
    ]
    for (const [behaviour, expected] of cases) {
      owner.reset()
      owner.plan.push(behaviour)
      expect(await callVia(caller.url, 'inventory.reserve', reserve)).toMatchObject({ ok: false, ...expected })
    }
  })

  test('an owner that does not answer: Unavailable (CALL_TIMEOUT) at the deadline, not later', async () => {
    owner.reset()
    owner.plan.push('hang', 'hang', 'hang')
    const r = await callVia(caller.url, 'inventory.getStock', {}, { timeoutMs: 300 })
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503, code: 'CALL_TIMEOUT' })
    expect(r.ms).toBeGreaterThanOrEqual(290)
    expect(r.ms).toBeLessThan(450)
    owner.reset()
  })

  test('no owner for a plugin: Unavailable at once', async () => {
    const r = await callVia(caller.url, 'auth.getUser', { id: 'x' })
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
    expect(r.ms).toBeLessThan(20)
  })
})

describe('service token configuration', () => {
  test('production refuses a short INTERNAL_SECRET', () => {
    const env = baseEnv({ NODE_ENV: 'production', JWT_SECRET: 'a-production-secret-of-enough-length-0123', INTERNAL_SECRET: 'short' })
    expect(() => loadKernelConfig(env)).toThrow('INTERNAL_SECRET must be at least 32 characters')
  })

  test('processes with different secrets refuse each other; the same INTERNAL_SECRET everywhere is accepted', async () => {
    const a = new ServiceTokens(internalSecret({ JWT_SECRET, INTERNAL_SECRET: 'shared-internal-secret-0123456789abcdef' }))
    const b = new ServiceTokens(internalSecret({ JWT_SECRET: 'another-jwt-secret', INTERNAL_SECRET: 'shared-internal-secret-0123456789abcdef' }))
    expect(await b.verify(`Bearer ${await a.tokenFor('orders')}`)).toBe('orders')
    await expect(tokens.verify(`Bearer ${await a.tokenFor('orders')}`)).rejects.toThrow()
  })
})

describe('the callee side of the deadline', () => {
  test('the owner stops waiting at the deadline the call carries and answers 503 CALL_TIMEOUT', async () => {
    const config = loadKernelConfig(baseEnv({ DATABASE_URL: 'sqlite::memory:' }))
    const log = createLogger('silent')
    const metrics = new Metrics()
    const local = new LocalTransport()
    let finished = 0
    local.register('inventory.getStock', async () => {
      await Bun.sleep(500)
      finished++
      return { items: [] }
    })
    const app = createApp({ config, log, metrics, readiness: async () => ({ started: true, accepting: true, plugins: {} }), tags: [], version: 'test' })
    app.use(callEndpoint({ local, tokens, accepting: () => true, defaultTimeoutMs: 5000, log }))
    const server = serveApp(app, { config, log, metrics, ipLimiter: memoryCache().limiter('ip', { points: 100, durationSeconds: 60 }), accepting: () => true })
    try {
      const url = `http://127.0.0.1:${server.port}`
      const authorization = `Bearer ${await tokens.tokenFor('storefront')}`
      const t0 = performance.now()
      const late = await internal(url, 'inventory.getStock', {}, { authorization, 'x-call-timeout-ms': '150' })
      const ms = performance.now() - t0
      expectError(late, 503, 'CALL_TIMEOUT')
      expect(ms).toBeGreaterThanOrEqual(140)
      expect(ms).toBeLessThan(400)
      expectStatus(await internal(url, 'inventory.getStock', {}, { authorization, 'x-call-timeout-ms': '2000' }), 200)
    } finally {
      server.stop(true)
    }
  })
})
