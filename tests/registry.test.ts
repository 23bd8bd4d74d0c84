/**
 * The registry (issue 5, item 1): who hosts which plugin, where, and whether it serves. Every
 * adapter passes the same cases for the process itself; static routes are read from PLUGIN_ROUTES;
 * with TEST_REDIS_URL, real processes announce themselves in Redis, withdraw before they drain,
 * disappear after the TTL when killed, and replicas share the calls.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { ConfigError, loadKernelConfig } from '../kernel/config'
import { LocalRegistry } from '../kernel/registry/local'
import type { Instance, Registry } from '../kernel/registry/port'
import { RedisRegistry } from '../kernel/registry/redis'
import { StaticRegistry } from '../kernel/registry/static'
import { stopChild } from '../scripts/bench/children'
import { adminToken, baseEnv, type ChildServer, client, eventually, expectStatus, isolatedStore, services, spawnServer, variant } from './harness'

const self = (plugins = ['inventory']): Instance => ({ id: Bun.randomUUIDv7(), url: 'http://10.0.0.1:3000', plugins, ready: false })

const adapters: [string, () => Registry][] = [
  ['local', () => new LocalRegistry()],
  ['static', () => new StaticRegistry({ auth: ['http://auth:3000'] })],
]
if (services.redisUrl)
  adapters.push(['redis', () => new RedisRegistry({ url: services.redisUrl!, prefix: `test:${Bun.randomUUIDv7()}:`, heartbeatMs: 100, ttlMs: 1000 })])

describe.each(adapters)('the %s registry: this process', (_, open) => {
  let registry: Registry
  beforeAll(() => void (registry = open()))
  afterAll(() => registry.close())

  test('a process that joined is known but owns nothing until it is ready', async () => {
    const me = self()
    await registry.join(me)
    expect(registry.instances().find((i) => i.id === me.id)).toEqual(me)
    expect(registry.owners('inventory')).toEqual([])
    await registry.setReady(true)
    expect(registry.owners('inventory')).toEqual([me.url])
    expect(registry.owners('chat')).toEqual([])
  })

  test('a process that withdrew owns nothing any more', async () => {
    await registry.withdraw()
    expect(registry.owners('inventory')).toEqual([])
  })
})

describe('static routes (PLUGIN_ROUTES)', () => {
  const config = (PLUGIN_ROUTES: string) => loadKernelConfig(baseEnv({ PLUGIN_ROUTES }))

  test('every listed URL is an owner; | and a repeated name add replicas', () => {
    const routes = config('inventory=http://inv-a:3000|http://inv-b:3000/, auth=http://auth:3000,inventory=http://inv-c:3000').PLUGIN_ROUTES!
    expect(routes).toEqual({ inventory: ['http://inv-a:3000', 'http://inv-b:3000', 'http://inv-c:3000'], auth: ['http://auth:3000'] })
    const registry = new StaticRegistry(routes)
    expect(registry.owners('inventory')).toEqual(['http://inv-a:3000', 'http://inv-b:3000', 'http://inv-c:3000'])
    expect(registry.owners('auth')).toEqual(['http://auth:3000'])
    expect(registry.owners('chat')).toEqual([])
  })

  test('a bad map stops start-up with a message naming PLUGIN_ROUTES', () => {
    for (const bad of ['inventory', 'inventory=not a url', 'inventory=ftp://x', 'Bad=http://x']) {
      let error: unknown
      try {
        config(bad)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as Error).message).toContain('PLUGIN_ROUTES')
    }
  })

  test('REGISTRY=redis without REDIS_URL is refused', () => {
    expect(() => loadKernelConfig(baseEnv({ REGISTRY: 'redis' }))).toThrow('REGISTRY=redis needs REDIS_URL')
  })
})

// ---------------------------------------------------------------------------
// Real processes in Redis
// ---------------------------------------------------------------------------

const INTERNAL_ROUTE = '"route":"/internal/v1/calls/:action"'
const servedCalls = (server: ChildServer) => server.output().split('\n').filter((l) => l.includes(INTERNAL_ROUTE)).length

describe.skipIf(!services.redisUrl)(`the Redis registry with real processes (${variant})`, () => {
  const store = isolatedStore()
  const prefix = store.env.REDIS_PREFIX
  const env = (extra: Record<string, string>) => baseEnv({ ...store.env, REGISTRY_HEARTBEAT_MS: '100', REGISTRY_TTL_MS: '1000', ...extra })
  let redis: Redis
  let first: ChildServer
  let second: ChildServer
  let caller: ChildServer
  const sku = `SKU-${Date.now().toString(36)}`

  /** The instances Redis holds now, as a reader sees them (expired entries excluded). */
  const entries = async (): Promise<Instance[]> => {
    const ids = await redis.smembers(`${prefix}registry:instances`)
    const raw = ids.length ? await redis.mget(ids.map((id) => `${prefix}registry:instance:${id}`)) : []
    return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r))
  }
  const entryAt = async (url: string) => (await entries()).find((i) => i.url === url)

  beforeAll(async () => {
    redis = new Redis(services.redisUrl!)
    first = await spawnServer(env({ PLUGINS: 'auth,inventory,ledger' }))
    second = await spawnServer(env({ PLUGINS: 'auth,inventory,ledger' }))
    caller = await spawnServer(env({ PLUGINS: 'storefront' }))
    const admin = await adminToken(first.url)
    const api = client(first.url)
    expectStatus(await api.post('/api/v1/inventory/warehouses', { code: 'W1', name: 'One' }, admin), 201)
    expectStatus(await api.post('/api/v1/inventory/items', { sku, name: 'A thing' }, admin), 201)
    expectStatus(await api.post('/api/v1/inventory/adjustments', { sku, warehouse: 'W1', delta: 5, reason: 'initial' }, admin), 201)
  }, 30_000)
  afterAll(async () => {
    await Promise.all([first, second, caller].filter(Boolean).map((s) => stopChild(s.proc, 5000)))
    redis?.disconnect()
    await store.cleanup()
  })

  const getStock = () => client(caller.url).post('/api/v1/storefront/call', { action: 'inventory.getStock', input: { sku } })

  test('a started process is listed with its plugins, its address and its readiness', async () => {
    const entry = await entryAt(first.url)
    expect(entry).toBeDefined()
    expect(entry!.plugins.sort()).toEqual(['auth', 'inventory', 'ledger'])
    expect(entry!.ready).toBe(true)
    expect((await entryAt(caller.url))?.plugins).toEqual(['storefront'])
    expect((await entries()).length).toBe(3)
  })

  test('calls to a plugin with two replicas are spread over both (round-robin)', async () => {
    const before = [servedCalls(first), servedCalls(second)]
    for (let i = 0; i < 20; i++) {
      const r = await getStock()
      expect(r.body).toMatchObject({ ok: true, result: { items: [{ sku, onHand: 5 }] } })
    }
    const served = await eventually(async () => {
      const now = [servedCalls(first) - before[0], servedCalls(second) - before[1]]
      return now[0] + now[1] >= 20 ? now : undefined
    })
    expect(served).toEqual([10, 10])
  })

  test('on SIGTERM a process withdraws before it drains, and calls keep going to the other replica', async () => {
    let slowDone = false
    const slow = fetch(`${first.url}/api/v1/ledger/slow?ms=1500`).then((r) => ((slowDone = true), r.status))
    await Bun.sleep(100)
    first.proc.kill('SIGTERM')
    const gone = await eventually(async () => (await entryAt(first.url)) === undefined, 1000)
    expect(gone).toBe(true)
    expect(slowDone).toBe(false) // still draining
    for (let i = 0; i < 10; i++) expect((await getStock()).body.ok).toBe(true)
    expect(await slow).toBe(200)
    expect(await first.proc.exited).toBe(0)
  })

  test('a process killed with SIGKILL stays listed until its TTL, then disappears', async () => {
    second.proc.kill('SIGKILL')
    await second.proc.exited
    const killedAt = Date.now()
    expect((await entryAt(second.url))?.ready).toBe(true)
    const gone = await eventually(async () => (await entryAt(second.url)) === undefined, 3000)
    expect(gone).toBe(true)
    expect(Date.now() - killedAt).toBeGreaterThan(500)
    // With no owner left, a call is Unavailable at once.
    const r = await eventually(async () => ((await getStock()).body.kind === 'Unavailable' ? (await getStock()).body : undefined), 1000)
    expect(r).toMatchObject({ ok: false, kind: 'Unavailable', status: 503 })
    expect(r.ms).toBeLessThan(20)
  })
})
