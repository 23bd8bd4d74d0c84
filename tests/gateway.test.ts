/**
 * The gateway role (issue 5, item 2), black-box: real processes, real HTTP. A gateway process, an
 * auth process and two inventory replicas share one store; clients talk to the gateway only. The
 * same cases run with static routes (PLUGIN_ROUTES, no Redis) and, when TEST_REDIS_URL is set, with
 * the Redis registry. An all-in-one server gives the reference answers.
 */
import { join } from 'node:path'
import Redis from 'ioredis'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { stopChild } from '../scripts/bench/children'
import { freePort } from '../scripts/free-port'
import {
  ADMIN,
  adminToken,
  baseEnv,
  type ChildServer,
  client,
  eventually,
  expectError,
  expectStatus,
  isolatedStore,
  JWT_SECRET,
  type Reply,
  ROOT,
  services,
  spawnServer,
  startServer,
  type TestServer,
  variant,
} from './harness'

/** How many requests a process answered for a route template (from its /metrics). */
async function served(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let n = 0
  for (const line of text.split('\n'))
    if (line.startsWith('http_request_duration_seconds_count{') && line.includes(`route="${route}"`)) n += Number(line.split(' ').pop())
  return n
}

/** A reply without what differs per request, for comparing answers across topologies. */
const comparable = (r: Reply) => ({ status: r.status, body: JSON.parse(JSON.stringify(r.body ?? null).replace(/"requestId":"[^"]*"/g, '"requestId":"-"')) })

interface Topology {
  name: string
  enabled: boolean
  /** Starts auth, two inventory replicas and the gateway; `restartInventory` brings the first replica back. */
  start(store: ReturnType<typeof isolatedStore>): Promise<{ gateway: ChildServer; auth: ChildServer; inventory: ChildServer[]; restartInventory: () => Promise<ChildServer> }>
}

const common = { CALL_BREAKER_HALF_OPEN_MS: '300', RATE_LIMIT_IP_PER_MIN: '10000' }
// Owners with a tiny per-IP budget: forwarded requests must not be counted there (the gateway counted them).
const ownerEnv = { RATE_LIMIT_IP_PER_MIN: '15' }

const topologies: Topology[] = [
  {
    name: 'static routes (PLUGIN_ROUTES)',
    enabled: true,
    async start(store) {
      const [authPort, inv1Port, inv2Port] = [await freePort(), await freePort(), await freePort()]
      const at = (port: number) => `http://127.0.0.1:${port}`
      const env = (plugins: string, port: number) => baseEnv({ ...store.env, ...common, ...ownerEnv, PLUGINS: plugins, PORT: String(port) })
      // Without Redis, each process keeps its own memory cache: nothing here needs a shared one.
      const auth = await spawnServer(env('auth', authPort))
      const inventory = [await spawnServer(env('inventory', inv1Port)), await spawnServer(env('inventory', inv2Port))]
      const gateway = await spawnServer(
        baseEnv({ ...store.env, ...common, PLUGINS: 'gateway', PLUGIN_ROUTES: `auth=${at(authPort)},inventory=${at(inv1Port)}|${at(inv2Port)}` }),
      )
      return { gateway, auth, inventory, restartInventory: () => spawnServer(env('inventory', inv1Port)) }
    },
  },
  {
    name: 'the Redis registry',
    enabled: Boolean(services.redisUrl),
    async start(store) {
      const env = (plugins: string, extra: Record<string, string> = {}) =>
        baseEnv({ ...store.env, ...common, REGISTRY_HEARTBEAT_MS: '200', REGISTRY_TTL_MS: '2000', PLUGINS: plugins, ...extra })
      const auth = await spawnServer(env('auth', ownerEnv))
      const inventory = [await spawnServer(env('inventory', ownerEnv)), await spawnServer(env('inventory', ownerEnv))]
      const gateway = await spawnServer(env('gateway'))
      return { gateway, auth, inventory, restartInventory: () => spawnServer(env('inventory', ownerEnv)) }
    },
  },
]

for (const topology of topologies)
  describe.skipIf(!topology.enabled)(`gateway over ${topology.name} (${variant})`, () => {
    const store = isolatedStore()
    let gateway: ChildServer
    let auth: ChildServer
    let inventory: ChildServer[]
    let restartInventory: () => Promise<ChildServer>
    let reference: TestServer // all-in-one, for the same answers
    let api: ReturnType<typeof client>
    let admin: string

    beforeAll(async () => {
      ;({ gateway, auth, inventory, restartInventory } = await topology.start(store))
      reference = await startServer()
      api = client(gateway.url)
      admin = await adminToken(gateway.url)
    }, 60_000)
    afterAll(async () => {
      await Promise.all([gateway, auth, ...(inventory ?? [])].filter(Boolean).map((s) => stopChild(s.proc, 5000)))
      await reference?.stop()
      await store.cleanup()
    })

    test('register and login through the gateway, then a guarded inventory route works with the token', async () => {
      const email = `gw-${Date.now()}@tessera.test`
      const reg = await api.post('/api/v1/auth/register', { email, password: 'correct-horse-1', name: 'Via Gateway' })
      expectStatus(reg, 201)
      const login = await api.post('/api/v1/auth/login', { email, password: 'correct-horse-1' })
      expectStatus(login, 200)
      const me = await api.get('/api/v1/auth/me', login.body.accessToken)
      expectStatus(me, 200)
      expect(me.body.email).toBe(email)
      // A customer may read stock, and may not create a warehouse (403 from the owner's own guard).
      expectStatus(await api.get('/api/v1/inventory/stock', login.body.accessToken), 200)
      expectError(await api.post('/api/v1/inventory/warehouses', { code: 'WX', name: 'No' }, login.body.accessToken), 403)
      const created = await api.post('/api/v1/inventory/warehouses', { code: `W${Date.now().toString(36)}`, name: 'Main' }, admin)
      expectStatus(created, 201)
    })

    test('a bad or missing token is refused at the gateway: 401 envelope, and the owner never sees the request', async () => {
      const before = await Promise.all(inventory.map((s) => served(s.url, '/api/v1/inventory/alerts')))
      const requestId = `bad-token-${Date.now()}`
      const bad = await api.get('/api/v1/inventory/alerts', 'not-a-token', { 'x-request-id': requestId })
      expectError(bad, 401)
      expect(bad.headers.get('x-request-id')).toBe(requestId)
      const after = await Promise.all(inventory.map((s) => served(s.url, '/api/v1/inventory/alerts')))
      expect(after).toEqual(before)
      for (const s of inventory) expect(s.output()).not.toContain(requestId)
      expect(await (await fetch(`${gateway.url}/metrics`)).text()).toMatch(/gateway_proxied_total\{plugin="inventory",outcome="unauthorized"\} [1-9]/)
      // Without a token, the owner's guard answers as usual.
      expectError(await api.get('/api/v1/inventory/alerts'), 401)
    })

    test('the request id and the trace context travel to the owner', async () => {
      const requestId = `trace-${Date.now()}`
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
      const r = await api.get('/api/v1/inventory/alerts', admin, { 'x-request-id': requestId, traceparent })
      expectStatus(r, 200)
      expect(r.headers.get('x-request-id')).toBe(requestId)
      const line = await eventually(async () => inventory.flatMap((s) => s.output().split('\n')).find((l) => l.includes(requestId)))
      expect(line).toBeDefined()
      expect(JSON.parse(line!)).toMatchObject({ reqId: requestId, traceparent, status: 200 })
    })

    test('the same answers as all-in-one', async () => {
      const refAdmin = await adminToken(reference.url)
      const ref = client(reference.url)
      // The gateway knows which routes need a token once it has read the owners' documents.
      await fetch(`${gateway.url}/swagger/json`)
      const cases: [string, (c: ReturnType<typeof client>, token: string) => Promise<Reply>][] = [
        ['unknown route of a plugin', (c) => c.get('/api/v1/inventory/no-such-route')],
        ['schema violation', (c, t) => c.post('/api/v1/inventory/warehouses', { code: 1 }, t)],
        ['malformed JSON', (c, t) => c.post('/api/v1/inventory/items', '{"sku":', t)],
        ['unknown stock', (c, t) => c.get('/api/v1/inventory/stock?sku=NOPE', t)],
        ['wrong password', (c) => c.post('/api/v1/auth/login', { email: ADMIN.email, password: 'wrong-password-1' })],
        // A route that needs no token ignores a stale one, behind the gateway as well.
        ['stale token on an open route', (c) => c.post('/api/v1/auth/login', { email: ADMIN.email, password: 'wrong-password-1' }, 'stale-token')],
        ['stale token on an unknown route', (c) => c.get('/api/v1/inventory/no-such-route', 'stale-token')],
        ['unknown item', (c, t) => c.get('/api/v1/inventory/items/00000000-0000-0000-0000-000000000000', t)],
      ]
      for (const [name, run] of cases) {
        const [via, direct] = [await run(api, admin), await run(ref, refAdmin)]
        expect({ name, ...comparable(via) }).toEqual({ name, ...comparable(direct) })
      }
    })

    test('limits are applied once, at the gateway: owners with a tiny per-IP budget serve every forwarded request', async () => {
      for (let i = 0; i < 25; i++) expectStatus(await api.get('/api/v1/inventory/stock', admin), 200)
      for (let i = 0; i < 20; i++) expect((await api.get('/api/v1/inventory/stock')).status).toBe(401)
    })

    test('requests to a plugin with two replicas are spread over both', async () => {
      const before = await Promise.all(inventory.map((s) => served(s.url, '/api/v1/inventory/stock')))
      for (let i = 0; i < 20; i++) expectStatus(await api.get('/api/v1/inventory/stock', admin), 200)
      const after = await Promise.all(inventory.map((s) => served(s.url, '/api/v1/inventory/stock')))
      const spread = after.map((n, i) => n - before[i])
      expect(spread[0] + spread[1]).toBe(20)
      expect(Math.min(...spread)).toBeGreaterThanOrEqual(5)
    })

    test('/swagger/json is the merged document of the live plugins', async () => {
      const doc: any = await (await fetch(`${gateway.url}/swagger/json`)).json()
      expect(doc.paths['/api/v1/auth/login']).toBeDefined()
      expect(doc.paths['/api/v1/inventory/items']).toBeDefined()
      expect(doc.paths['/health/ready']).toBeDefined()
      const tags = doc.tags.map((t: { name: string }) => t.name)
      expect(tags).toContain('auth')
      expect(tags).toContain('inventory')
      expect(doc.components.securitySchemes.bearer).toBeDefined()
      expect((await fetch(`${gateway.url}/swagger`)).status).toBe(200)
    })

    test('an unknown plugin prefix is a 404 envelope; readiness lists the live owners', async () => {
      expectError(await api.get('/api/v1/nothing-here/at-all'), 404)
      const ready = await api.get('/health/ready')
      expectStatus(ready, 200)
      expect(ready.body.plugins.gateway.status).toBe('up')
      expect(ready.body.owners.auth).toBe(1)
      expect(ready.body.owners.inventory).toBe(2)
    })

    test('kill -9 of one inventory replica: reads go on without a single 503 on the other one', async () => {
      const [survivor, victim] = inventory
      victim.proc.kill('SIGKILL')
      await victim.proc.exited
      inventory = [survivor]
      for (let i = 0; i < 10; i++) expectStatus(await api.get('/api/v1/inventory/stock', admin), 200)
    })

    test('kill -9 of every inventory process: its routes answer 503 within 1 s, auth still works; a restart serves again within 5 s', async () => {
      for (const s of inventory) s.proc.kill('SIGKILL')
      await Promise.all(inventory.map((s) => s.proc.exited))
      for (const method of ['POST', 'DELETE'] as const) {
        const t0 = performance.now()
        const r = await (method === 'POST' ? api.post('/api/v1/inventory/adjustments', { sku: 'X', warehouse: 'W', delta: 1, reason: 'r' }, admin) : api.del('/api/v1/inventory/reservations/x', admin))
        expect(performance.now() - t0).toBeLessThan(1000)
        expectError(r, 503)
      }
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now()
        const r = await api.get('/api/v1/inventory/stock', admin)
        expect(performance.now() - t0).toBeLessThan(1000)
        expectError(r, 503)
      }
      expectStatus(await api.get('/api/v1/auth/me', admin), 200)
      const doc = await eventually(async () => {
        const d: any = await (await fetch(`${gateway.url}/swagger/json`)).json()
        return d.paths['/api/v1/inventory/items'] ? undefined : d
      }, 4000)
      expect(doc.paths['/api/v1/auth/login']).toBeDefined()
      expect(doc.paths['/api/v1/inventory/items']).toBeUndefined()
      expect(await (await fetch(`${gateway.url}/metrics`)).text()).toMatch(/gateway_proxied_total\{plugin="inventory",outcome="unavailable"\} [1-9]/)

      const t0 = Date.now()
      const restarted = await restartInventory()
      inventory = [restarted]
      const back = await eventually(async () => (await api.get('/api/v1/inventory/stock', admin)).status === 200, 5000)
      expect(back).toBe(true)
      expect(Date.now() - t0).toBeLessThan(5000)
    }, 20_000)
  })

describe.skipIf(!services.databaseUrl || !services.redisUrl)('scripts/split.ts', () => {
  test('starts the gateway and one process per plugin, prints the URLs, serves through the gateway, and stops cleanly on SIGTERM', async () => {
    const proc = Bun.spawn([process.execPath, join(ROOT, 'scripts/split.ts'), '--port', '0', '--replicas', 'inventory=2', '--database', services.databaseUrl!, '--redis', services.redisUrl!], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, JWT_SECRET, LOG_LEVEL: 'info', PASSWORD_HASH_MEMORY_KIB: '1024', PASSWORD_HASH_TIME_COST: '1' },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    let text = ''
    const reader = proc.stdout.getReader()
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return
        text += new TextDecoder().decode(value)
      }
    })()
    const schema = () => /schema=(split_\w+)/.exec(text)?.[1]
    const prefix = () => /prefix (split:\w+:)/.exec(text)?.[1]
    try {
      expect(await eventually(async () => text.includes('tessera split: ready'), 40_000)).toBe(true)
      const urls = Object.fromEntries([...text.matchAll(/^ {2}(\S+)\s+(http:\/\/\S+)$/gm)].map((m) => [m[1], m[2]]))
      expect(Object.keys(urls).sort()).toEqual(['auth', 'catalog', 'chat', 'gateway', 'inventory-1', 'inventory-2', 'live', 'orders', 'payments'])
      expect(text).toMatch(/MQTT\s+mqtt:\/\/127\.0\.0\.1:\d+ \(embedded broker of inventory-1\)/)
      const admin = await adminToken(urls.gateway)
      expectStatus(await client(urls.gateway).get('/api/v1/inventory/stock', admin), 200)
      expectStatus(await client(urls.gateway).get('/api/v1/chat/conversations', admin), 200)
      const ready = await client(urls.gateway).get('/health/ready')
      expect(ready.body.owners).toEqual({ auth: 1, catalog: 1, chat: 1, inventory: 2, live: 1, orders: 1, payments: 1 })

      proc.kill('SIGTERM')
      expect(await proc.exited).toBe(0)
      await pump
      expect(text).toContain('tessera split: stopped')
      for (const url of Object.values(urls)) expect(await fetch(`${url}/health/live`).then(() => 'up', () => 'down')).toBe('down')
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL')
      if (schema()) {
        const sql = postgres(services.databaseUrl!, { onnotice: () => {}, max: 1 })
        await sql.unsafe(`drop schema if exists "${schema()}" cascade`)
        await sql.end()
      }
      if (prefix()) {
        const redis = new Redis(services.redisUrl!)
        const keys = await redis.keys(`${prefix()}*`)
        if (keys.length) await redis.del(...keys)
        await redis.quit()
      }
    }
  }, 60_000)
})

describe(`gateway limits (${variant})`, () => {
  const store = isolatedStore()
  let owner: ChildServer
  let gateway: TestServer

  beforeAll(async () => {
    const port = await freePort()
    owner = await spawnServer(baseEnv({ ...store.env, PLUGINS: 'auth,inventory', PORT: String(port) }))
    gateway = await startServer({ PLUGINS: 'gateway', PLUGIN_ROUTES: `auth=${owner.url},inventory=${owner.url}`, RATE_LIMIT_USER_PER_MIN: '5', RATE_LIMIT_IP_PER_MIN: '8' })
  }, 30_000)
  afterAll(async () => {
    if (owner) await stopChild(owner.proc, 5000)
    await gateway?.stop()
    await store.cleanup()
  })

  test('the per-user and per-IP limits answer 429 with Retry-After at the gateway, before the owner', async () => {
    const api = client(gateway.url)
    const email = `limits-${Date.now()}@tessera.test`
    expectStatus(await api.post('/api/v1/auth/register', { email, password: 'correct-horse-1', name: 'Limits' }), 201) // IP: 1
    const token = (await api.post('/api/v1/auth/login', { email, password: 'correct-horse-1' })).body.accessToken // IP: 2
    await fetch(`${gateway.url}/swagger/json`) // the gateway learns which routes need a token
    for (let i = 0; i < 5; i++) expectStatus(await api.get('/api/v1/auth/me', token), 200)
    const before = await served(owner.url, '/api/v1/auth/me')
    const limited = await api.get('/api/v1/auth/me', token)
    expectError(limited, 429)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await served(owner.url, '/api/v1/auth/me')).toBe(before)
    // Requests without a token count against the IP: 6 more reach the limit of 8.
    for (let i = 0; i < 6; i++) expectError(await api.get('/api/v1/inventory/stock'), 401)
    expectError(await api.get('/api/v1/inventory/stock'), 429)
  })
})
