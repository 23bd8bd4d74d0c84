/**
 * The black-box end-to-end suite: what a client, a device and a dashboard see, through public
 * surfaces only (HTTP base URL, MQTT broker, Socket.IO URLs). It is registered once per topology
 * (tests/e2e/e2e.test.ts) and must pass unchanged on each.
 */
import { expect, test } from 'bun:test'
import mqtt, { type MqttClient } from 'mqtt'
import { ADMIN, adminToken, client, eventually, expectError, expectStatus, userWithRole } from '../harness'
import { type Client, connect, waitFor } from '../realtime-client'
import type { Topology } from './topologies'

export const INV = '/api/v1/inventory'
export const CHAT = '/api/v1/chat'
export const CATALOG = '/api/v1/catalog'
let n = 0
export const uid = () => `${Date.now().toString(36)}${(n++).toString(36)}`.toUpperCase()

/** Readings of CONTRACT.md §5, with explicit seq. */
export const reading = (seq: number, sku: string, type: 'delta' | 'count', value: number, ts = Date.now()) => ({ seq, ts, sku, type, value })

/** What the tests share for one topology: its admin session and helpers over its HTTP surface. */
export function surface(topology: () => Topology) {
  const api = () => client(topology().http)
  let admin: string | undefined
  const token = async () => (admin ??= await adminToken(topology().http))

  /** A warehouse with an item, created over HTTP. */
  async function warehouseWithItem() {
    const warehouse = `W${uid()}`
    const sku = `SKU-${uid()}`
    expectStatus(await api().post(`${INV}/warehouses`, { code: warehouse, name: 'e2e' }, await token()), 201)
    expectStatus(await api().post(`${INV}/items`, { sku, name: 'thing' }, await token()), 201)
    return { warehouse, sku }
  }

  /** A device registered over HTTP and connected to the broker with its credentials (QoS 1 publishes). */
  async function device(warehouse: string, clients: MqttClient[]) {
    const created = await api().post(`${INV}/devices`, { warehouse, name: 'gate' }, await token())
    expectStatus(created, 201)
    const conn = await mqtt.connectAsync(topology().mqtt, { username: created.body.id, password: created.body.secret, clientId: `dev-${created.body.id}`, reconnectPeriod: 0 })
    clients.push(conn)
    const topic = `warehouses/${warehouse}/devices/${created.body.id}/readings`
    const send = (payload: unknown) => conn.publishAsync(topic, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 })
    return { id: created.body.id as string, conn, topic, send }
  }

  const stock = async (sku: string, warehouse: string) => {
    const r = await api().get(`${INV}/stock?sku=${sku}&warehouse=${warehouse}`, await token())
    expectStatus(r, 200)
    return (r.body.items[0] ?? { onHand: 0, reserved: 0, available: 0 }) as { onHand: number; reserved: number; available: number }
  }

  /**
   * onHand once `expected` is reached and nothing more arrives. The embedded broker acknowledges
   * after commit, so there it must hold at once; an external broker acknowledges on receipt.
   */
  async function settledOnHand(sku: string, warehouse: string, expected: number, ms = 10_000) {
    if (topology().acksAfterCommit) return (await stock(sku, warehouse)).onHand
    await eventually(async () => (await stock(sku, warehouse)).onHand === expected, ms)
    await Bun.sleep(150)
    return (await stock(sku, warehouse)).onHand
  }

  const movements = async (sku: string, warehouse: string) =>
    (await api().get(`${INV}/movements?sku=${sku}&warehouse=${warehouse}&limit=200`, await token())).body.items as { delta: number; onHandAfter: number; source: string; reason: string }[]

  /** A catalog product for `sku`, with a unique word in its name to find it by. */
  async function product(sku: string) {
    // Letters only: full-text parsers split words at digits differently (SQLite FTS5, PostgreSQL tsvector).
    const word = `kettle${uid().toLowerCase().replace(/\d/g, (d) => 'abcdefghij'[Number(d)])}`
    expectStatus(await api().post(`${CATALOG}/products`, { sku, name: `Kettle ${word}`, price: 1999, currency: 'EUR' }, await token()), 201)
    return word
  }

  /** The catalog's in-stock search for `word`: the SKUs and availability it lists. */
  const inStock = async (word: string) => {
    const r = await api().get(`${CATALOG}/products?q=${word}&inStock=true`, await token())
    return r.status === 200 ? (r.body.items as { sku: string; available: number }[]).map((p) => [p.sku, p.available]) : undefined
  }

  return { api, token, warehouseWithItem, device, stock, settledOnHand, movements, product, inStock }
}

export function blackBoxSuite(topology: () => Topology, mqttClients: MqttClient[]) {
  const s = surface(topology)
  const { api, token } = s

  test('health: /health/live and /health/ready answer 200 with every plugin up', async () => {
    expectStatus(await api().get('/health/live'), 200)
    const ready = await api().get('/health/ready')
    expectStatus(ready, 200)
    for (const status of Object.values(ready.body.plugins as Record<string, { status: string }>)) expect(status.status).toBe('up')
  })

  test('/swagger/json lists every plugin’s paths, its tags and the bearer scheme', async () => {
    const doc: any = await (await fetch(`${topology().http}/swagger/json`)).json()
    for (const path of ['/api/v1/auth/login', '/api/v1/auth/me', `${INV}/items`, `${INV}/reservations`, `${INV}/devices`, `${CHAT}/conversations`, `${CATALOG}/products`, '/api/v1/stockwatch/seen'])
      expect({ path, listed: Boolean(doc.paths[path]) }).toEqual({ path, listed: true })
    const tags = doc.tags.map((t: { name: string }) => t.name)
    for (const tag of ['auth', 'inventory', 'chat', 'catalog', 'stockwatch']) expect(tags).toContain(tag)
    expect(doc.components.securitySchemes.bearer).toBeDefined()
  })

  test('auth: register, login, me, refresh (a spent refresh token is refused), with errors for bad input', async () => {
    const email = `e2e-${uid().toLowerCase()}@tessera.test`
    const reg = await api().post('/api/v1/auth/register', { email, password: 'correct-horse-1', name: 'E2E' })
    expectStatus(reg, 201)
    expect(reg.body.user.email).toBe(email)
    expect(reg.body.user.roles).toEqual(['customer'])
    expectError(await api().post('/api/v1/auth/register', { email, password: 'correct-horse-1', name: 'Again' }), 409)
    expectError(await api().post('/api/v1/auth/register', { email: `x-${email}`, password: 'short', name: 'Short' }), 422, 'VALIDATION_FAILED')
    expectError(await api().post('/api/v1/auth/register', '{"email":', undefined), 400)
    // Nothing was created by the refused attempts.
    expectError(await api().post('/api/v1/auth/login', { email: `x-${email}`, password: 'short' }), 401)

    const login = await api().post('/api/v1/auth/login', { email, password: 'correct-horse-1' })
    expectStatus(login, 200)
    expectError(await api().post('/api/v1/auth/login', { email, password: 'wrong-password-1' }), 401)
    const me = await api().get('/api/v1/auth/me', login.body.accessToken)
    expectStatus(me, 200)
    expect(me.body.id).toBe(reg.body.user.id)
    expectError(await api().get('/api/v1/auth/me'), 401)
    expectError(await api().get('/api/v1/auth/me', 'not-a-token'), 401)

    const refreshed = await api().post('/api/v1/auth/refresh', { refreshToken: login.body.refreshToken })
    expectStatus(refreshed, 200)
    expect(refreshed.body.refreshToken).not.toBe(login.body.refreshToken)
    expectStatus(await api().get('/api/v1/auth/me', refreshed.body.accessToken), 200)
    expectError(await api().post('/api/v1/auth/refresh', { refreshToken: login.body.refreshToken }), 401)
  })

  test('inventory: warehouses, items, adjustments, stock and the movement ledger; refusals change nothing', async () => {
    const admin = await token()
    const { warehouse, sku } = await s.warehouseWithItem()
    expectError(await api().post(`${INV}/warehouses`, { code: warehouse, name: 'dup' }, admin), 409)
    expectError(await api().post(`${INV}/items`, { sku, name: 'dup' }, admin), 409)
    const listed = await api().get(`${INV}/warehouses?limit=200`, admin)
    expectStatus(listed, 200)
    expect(listed.body.items.some((w: { code: string }) => w.code === warehouse)).toBe(true)
    expect(listed.body).toHaveProperty('nextCursor')

    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 10, reason: 'delivery' }, admin), 201)
    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: -3, reason: 'damaged' }, admin), 201)
    expect(await s.stock(sku, warehouse)).toEqual({ sku, warehouse, onHand: 7, reserved: 0, available: 7 } as never)

    // Bad input of every kind: an envelope, and the stock and ledger stay as they were.
    const customer = await userWithRole(topology().http, 'customer', admin)
    expectError(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 1.5, reason: 'x' }, admin), 422, 'VALIDATION_FAILED')
    expectError(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 1, reason: 'x', extra: true }, admin), 422)
    expectError(await api().post(`${INV}/adjustments`, '{"sku":', admin), 400)
    expectError(await api().post(`${INV}/adjustments`, 'sku=x', admin, { 'content-type': 'text/plain' }), 415)
    expectError(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: -100, reason: 'too many' }, admin), 409)
    expectError(await api().post(`${INV}/adjustments`, { sku: 'NO-SUCH', warehouse, delta: 1, reason: 'x' }, admin), 404)
    expectError(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 1, reason: 'x' }, customer.token), 403)
    expectError(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 1, reason: 'x' }), 401)
    expect((await s.stock(sku, warehouse)).onHand).toBe(7)

    const ledger = await s.movements(sku, warehouse)
    expect(ledger.map((m) => [m.delta, m.onHandAfter, m.reason])).toEqual([
      [-3, 7, 'damaged'],
      [10, 10, 'delivery'],
    ])
  })

  test('reservations: reserve, commit, release, 409 when short, and 20 racing for 5 get exactly 5', async () => {
    const admin = await token()
    const { warehouse, sku } = await s.warehouseWithItem()
    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 8, reason: 'delivery' }, admin), 201)
    const a = await api().post(`${INV}/reservations`, { sku, warehouse, quantity: 2, reference: 'order-a' }, admin)
    expectStatus(a, 201)
    const b = await api().post(`${INV}/reservations`, { sku, warehouse, quantity: 1, reference: 'order-b' }, admin)
    expectStatus(b, 201)
    expect(await s.stock(sku, warehouse)).toEqual({ sku, warehouse, onHand: 8, reserved: 3, available: 5 } as never)
    expectStatus(await api().post(`${INV}/reservations/${a.body.id}/commit`, undefined, admin), 200)
    expectStatus(await api().del(`${INV}/reservations/${b.body.id}`, admin), 200)
    expect(await s.stock(sku, warehouse)).toEqual({ sku, warehouse, onHand: 6, reserved: 0, available: 6 } as never)
    expectError(await api().post(`${INV}/reservations`, { sku, warehouse, quantity: 7, reference: 'too-big' }, admin), 409)
    expectError(await api().post(`${INV}/reservations`, { sku, warehouse, quantity: 0, reference: 'zero' }, admin), 422)

    // Leave exactly 5 available, then race 20 single-unit reservations for them.
    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: -1, reason: 'count' }, admin), 201)
    const race = await Promise.all(Array.from({ length: 20 }, (_, i) => api().post(`${INV}/reservations`, { sku, warehouse, quantity: 1, reference: `race-${i}` }, admin)))
    const statuses = race.map((r) => r.status).sort()
    expect(statuses.filter((x) => x === 201)).toHaveLength(5)
    expect(statuses.filter((x) => x === 409)).toHaveLength(15)
    for (const r of race.filter((r) => r.status === 409)) expectError(r, 409)
    expect(await s.stock(sku, warehouse)).toEqual({ sku, warehouse, onHand: 5, reserved: 5, available: 0 } as never)
  })

  test('MQTT: delta, count, a duplicate seq and a malformed payload reach stock and the ledger as the contract says', async () => {
    const { warehouse, sku } = await s.warehouseWithItem()
    const d = await s.device(warehouse, mqttClients)
    await d.send(reading(1, sku, 'delta', 10))
    await d.send(reading(2, sku, 'delta', -3))
    await d.send(reading(2, sku, 'delta', -3)) // a re-send: applied once
    await d.send('{"seq": 3, "ts": 1, "sku":') // malformed: rejected, the stream goes on
    await d.send({ seq: 4, ts: Date.now(), sku, type: 'teleport', value: 1 })
    await d.send(reading(5, sku, 'delta', 5))
    expect(await s.settledOnHand(sku, warehouse, 12)).toBe(12)
    await d.send(reading(6, sku, 'count', 20, Date.now() + 1000))
    expect(await s.settledOnHand(sku, warehouse, 20)).toBe(20)

    const ledger = await s.movements(sku, warehouse)
    expect(ledger.map((m) => m.delta).sort((x, y) => x - y)).toEqual([-3, 5, 8, 10])
    expect(ledger[0].onHandAfter).toBe(20)
    expect(new Set(ledger.map((m) => m.source))).toEqual(new Set([`sensor:${d.id}`]))
    const readings = (await eventually(async () => {
      const items = (await api().get(`${INV}/devices/${d.id}/readings?limit=200`, await token())).body.items as { status: string; reason: string | null }[]
      return items.filter((r) => r.status === 'rejected').length >= 2 ? items : undefined
    }))!
    const rejected = readings.filter((r) => r.status === 'rejected').map((r) => r.reason ?? '')
    expect(rejected).toHaveLength(2)
    expect(rejected.some((r) => r.includes('malformed JSON'))).toBe(true)
  })

  test("a device publishing to another device's topic is refused: the other device's stock does not move", async () => {
    const a = await s.warehouseWithItem()
    const b = await s.warehouseWithItem()
    const da = await s.device(a.warehouse, mqttClients)
    const db = await s.device(b.warehouse, mqttClients)
    // The embedded broker drops the connection, Mosquitto drops the message.
    await Promise.race([da.conn.publishAsync(db.topic, JSON.stringify(reading(1, b.sku, 'delta', 100)), { qos: 1 }).catch(() => {}), Bun.sleep(500)])
    await db.send(reading(1, b.sku, 'delta', 1))
    expect(await s.settledOnHand(b.sku, b.warehouse, 1)).toBe(1)
    expect((await s.movements(b.sku, b.warehouse)).map((m) => m.source)).toEqual([`sensor:${db.id}`])
    const refused = await mqtt.connectAsync(topology().mqtt, { username: da.id, password: 'not-the-secret', reconnectPeriod: 0 }).then(
      (c) => (c.end(true), 'connected'),
      (e: Error) => e.message,
    )
    expect(refused).toMatch(/not authorized|bad username or password/i)
  })

  test('chat over Socket.IO: customer and agent converse, a repeated clientId is one message, REST has the history', async () => {
    const admin = await token()
    const agentUser = await userWithRole(topology().http, 'agent', admin)
    const customerUser = await userWithRole(topology().http, 'customer', admin)
    const agent = await connect(topology().realtime.chat, '/chat', agentUser.token)
    await eventually(async () => (await api().get(`${CHAT}/agents`, admin)).body.items.some((a: any) => a.userId === agentUser.id && a.status === 'online'))
    const customer = await connect(topology().realtime.chat, '/chat', customerUser.token)
    const ack = (socket: Client, event: string, payload: unknown) => socket.timeout(5000).emitWithAck(event, payload)

    const { conversation } = await ack(customer, 'conversation:start', { subject: 'where is my parcel' })
    expect(conversation.agentId).toBe(agentUser.id)
    expect((await waitFor(agent, 'conversation:assigned')).some((a) => a.conversation.id === conversation.id)).toBe(true)
    expect((await ack(agent, 'conversation:join', { conversationId: conversation.id })).ok).toBe(true)

    const clientId = `c-${uid()}`
    const sent = await ack(customer, 'message:send', { conversationId: conversation.id, clientId, body: 'Where is my parcel?' })
    expect(sent.message.senderId).toBe(customerUser.id)
    expect((await waitFor(agent, 'message:new'))[0].message).toEqual(sent.message)
    const again = await ack(customer, 'message:send', { conversationId: conversation.id, clientId, body: 'Where is my parcel?' })
    expect(again.message).toEqual(sent.message)
    const reply = await ack(agent, 'message:send', { conversationId: conversation.id, clientId: `c-${uid()}`, body: 'On its way.' })
    expect((await waitFor(customer, 'message:new', 2)).map((e) => e.message.body)).toEqual(['Where is my parcel?', 'On its way.'])
    expect((await ack(customer, 'message:send', { conversationId: conversation.id })).error.code).toBe('VALIDATION_FAILED')
    expect(customer.connected).toBe(true)

    const history = await api().get(`${CHAT}/conversations/${conversation.id}/messages`, customerUser.token)
    expectStatus(history, 200)
    expect(history.body.items.map((m: { id: string }) => m.id)).toEqual([reply.message.id, sent.message.id])
    expectError(await api().get(`${CHAT}/conversations/${conversation.id}/messages`), 401)
    const unauthorized = await connect(topology().realtime.chat, '/chat', 'not-a-token', { reconnection: false }).then(
      () => 'connected',
      (e: Error) => e.message,
    )
    expect(unauthorized).toBe('unauthorized')
    agent.close()
    customer.close()
  })

  test('/live: a manager’s dashboard receives stock:changed from an MQTT reading', async () => {
    const manager = await userWithRole(topology().http, 'manager', await token())
    const { warehouse, sku } = await s.warehouseWithItem()
    const dashboard = await connect(topology().realtime.live, '/live', manager.token)
    expect(await dashboard.emitWithAck('subscribe', { warehouses: [warehouse] })).toEqual({ ok: true, warehouses: [warehouse] })
    const d = await s.device(warehouse, mqttClients)
    await d.send(reading(1, sku, 'delta', 5))
    expect(await waitFor(dashboard, 'stock:changed', 1, 10_000)).toEqual([{ sku, warehouse, onHand: 5, reserved: 0, available: 5 }])
    dashboard.close()
  })

  test('a durable subscriber handles every stock change exactly once', async () => {
    const admin = await token()
    const { warehouse, sku } = await s.warehouseWithItem()
    for (const delta of [4, 3, -2]) expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta, reason: 'count' }, admin), 201)
    const seen = await eventually(async () => {
      const items = (await api().get(`/api/v1/stockwatch/seen?sku=${sku}`, admin)).body.items as { eventId: string; onHand: number }[]
      return items.length >= 3 ? items : undefined
    }, 10_000)
    await Bun.sleep(300) // and no second delivery comes later
    const items = (await api().get(`/api/v1/stockwatch/seen?sku=${sku}`, admin)).body.items as { eventId: string; onHand: number }[]
    expect(seen).toBeDefined()
    expect(items.map((i) => i.onHand).sort((x, y) => x - y)).toEqual([4, 5, 7])
    expect(new Set(items.map((i) => i.eventId)).size).toBe(3)
  })

  test('catalog: a product is in stock once inventory has it, out of stock once it is gone (inventory events)', async () => {
    const admin = await token()
    const { warehouse, sku } = await s.warehouseWithItem()
    const word = await s.product(sku)
    expect(await s.inStock(word)).toEqual([])
    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: 3, reason: 'delivery' }, admin), 201)
    await eventually(async () => JSON.stringify(await s.inStock(word)) === JSON.stringify([[sku, 3]]), 10_000)
    // Stock of other SKUs must not count: the list's availability is this SKU's alone.
    expect(await s.inStock(word)).toEqual([[sku, 3]])
    expectStatus(await api().post(`${INV}/adjustments`, { sku, warehouse, delta: -3, reason: 'sold' }, admin), 201)
    expect(await eventually(async () => JSON.stringify(await s.inStock(word)) === '[]', 10_000)).toBe(true)
    expectError(await api().post(`${CATALOG}/products`, { sku: `X-${sku}`, name: 'Bad price', price: 19.99, currency: 'EUR' }, admin), 422)
  })

  test('error envelopes: unknown routes and plugins are 404s, never a 5xx', async () => {
    expectError(await api().get('/api/v1/inventory/no-such-route'), 404)
    expectError(await api().get('/api/v1/no-such-plugin/anything'), 404)
    expectError(await api().get(`${INV}/items/00000000-0000-0000-0000-000000000000`, await token()), 404)
    expectError(await api().post('/api/v1/auth/login', { email: ADMIN.email }), 422)
  })
}
