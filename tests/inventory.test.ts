/**
 * The inventory plugin's stock side from the outside (CONTRACT.md sections 2 and 4): warehouses,
 * items, levels, adjustments and the ledger they leave, reservations (the race for the last units,
 * commit, release, expiry), low-stock alerts, purchase orders, roles and bad input. Real HTTP
 * against a real server; runs on embedded defaults and, with TEST_DATABASE_URL / TEST_REDIS_URL,
 * on PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { adminToken, client, expectError, expectStatus, startServer, type TestServer, userWithRole } from './harness'

const INV = '/api/v1/inventory'
type Api = ReturnType<typeof client>

let server: TestServer
let api: Api
let manager: { id: string; token: string }
let customer: { id: string; token: string }

beforeAll(async () => {
  server = await startServer({ RESERVATION_SWEEP_MS: '200' })
  api = client(server.url)
  const admin = await adminToken(server.url)
  manager = await userWithRole(server.url, 'manager', admin)
  customer = await userWithRole(server.url, 'customer', admin)
})
afterAll(async () => {
  await server?.stop()
})

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

let seq = 0
const unique = (tag: string) => `${tag}-${Date.now().toString(36)}-${seq++}`

const post = (path: string, body?: unknown, token = manager.token) => api.post(INV + path, body, token)
const get = (path: string, token = manager.token) => api.get(INV + path, token)

async function warehouse(code = unique('WH')) {
  const r = await post('/warehouses', { code, name: `Warehouse ${code}` })
  expectStatus(r, 201)
  return r.body as { id: string; code: string; name: string }
}

async function item(extra: Record<string, unknown> = {}) {
  const r = await post('/items', { sku: unique('SKU'), name: 'A thing', ...extra })
  expectStatus(r, 201)
  return r.body as { id: string; sku: string; name: string; reorderPoint?: number; reorderQuantity?: number; supplierId?: string }
}

async function adjust(sku: string, wh: string, delta: number, reason = 'test') {
  return post('/adjustments', { sku, warehouse: wh, delta, reason })
}

async function level(sku: string, wh: string) {
  const r = await get(`/stock?sku=${encodeURIComponent(sku)}&warehouse=${encodeURIComponent(wh)}`)
  expectStatus(r, 200)
  expect(r.body.items.length).toBe(1)
  return r.body.items[0] as { sku: string; warehouse: string; onHand: number; reserved: number; available: number }
}

async function movements(sku: string, wh: string) {
  const r = await get(`/movements?sku=${encodeURIComponent(sku)}&warehouse=${encodeURIComponent(wh)}&limit=200`)
  expectStatus(r, 200)
  return r.body.items as { id: string; sku: string; warehouse: string; delta: number; onHandAfter: number; reason: string; source: string; at: string }[]
}

/** A stocked SKU in a fresh warehouse. */
async function stocked(onHand: number, itemExtra: Record<string, unknown> = {}) {
  const wh = await warehouse()
  const it = await item(itemExtra)
  if (onHand) expectStatus(await adjust(it.sku, wh.code, onHand, 'opening stock'), 201)
  return { sku: it.sku, wh: wh.code, item: it }
}

const reserve = (sku: string, wh: string, quantity: number, extra: Record<string, unknown> = {}) =>
  post('/reservations', { sku, warehouse: wh, quantity, reference: unique('order'), ...extra })

// ---------------------------------------------------------------------------
// warehouses and items
// ---------------------------------------------------------------------------

describe('warehouses', () => {
  test('create, get by id or code, list; the code is unique', async () => {
    const code = unique('MAIN')
    const created = await post('/warehouses', { code, name: 'Main hall' })
    expectStatus(created, 201)
    expect(created.body.code).toBe(code)
    expect(created.body.name).toBe('Main hall')
    expect(typeof created.body.id).toBe('string')

    expectError(await post('/warehouses', { code, name: 'Again' }), 409, 'WAREHOUSE_CODE_TAKEN')

    const byId = await get(`/warehouses/${created.body.id}`)
    expectStatus(byId, 200)
    expect(byId.body.code).toBe(code)
    expect((await get(`/warehouses/${code}`)).body.id).toBe(created.body.id)
    expectError(await get('/warehouses/nope'), 404, 'WAREHOUSE_NOT_FOUND')

    const list = await get('/warehouses?limit=200')
    expectStatus(list, 200)
    expect(list.body.items.map((w: any) => w.code)).toContain(code)
  })

  test('codes appear in MQTT topics: no slashes, wildcards or spaces', async () => {
    for (const code of ['a/b', 'a+b', 'a#', 'has space', '', 'x'.repeat(33)]) expectError(await post('/warehouses', { code, name: 'bad' }), 422)
  })

  test('an Idempotency-Key replays the first answer', async () => {
    const body = { code: unique('IDEM'), name: 'Once' }
    const headers = { 'idempotency-key': unique('key') }
    const first = await api.post(`${INV}/warehouses`, body, manager.token, headers)
    const second = await api.post(`${INV}/warehouses`, body, manager.token, headers)
    expectStatus(first, 201)
    expectStatus(second, 201)
    expect(second.body).toEqual(first.body)
    expect(second.headers.get('idempotent-replayed')).toBe('true')
  })
})

describe('items', () => {
  test('create, get by id or SKU, change reorder settings; the SKU is unique', async () => {
    const supplier = await post('/suppliers', { name: 'Acme', email: 'orders@acme.test' })
    expectStatus(supplier, 201)
    const sku = unique('BOLT')
    const created = await post('/items', { sku, name: 'Bolt M6', reorderPoint: 5, reorderQuantity: 50, supplierId: supplier.body.id })
    expectStatus(created, 201)
    expect(created.body.sku).toBe(sku)
    expect(created.body.reorderPoint).toBe(5)
    expect(created.body.reorderQuantity).toBe(50)
    expect(created.body.supplierId).toBe(supplier.body.id)

    expectError(await post('/items', { sku, name: 'Same SKU' }), 409, 'SKU_TAKEN')
    expectError(await post('/items', { sku: unique('X'), name: 'x', supplierId: 'no-such-supplier' }), 404, 'SUPPLIER_NOT_FOUND')

    expect((await get(`/items/${created.body.id}`)).body.sku).toBe(sku)
    expect((await get(`/items/${sku}`)).body.id).toBe(created.body.id)
    expectError(await get('/items/nope'), 404, 'ITEM_NOT_FOUND')

    const patched = await api.patch(`${INV}/items/${created.body.id}`, { reorderPoint: 8, reorderQuantity: null }, manager.token)
    expectStatus(patched, 200)
    expect(patched.body.reorderPoint).toBe(8)
    expect('reorderQuantity' in patched.body).toBe(false)
    expect(patched.body.supplierId).toBe(supplier.body.id)
    expectError(await api.patch(`${INV}/items/${created.body.id}`, {}, manager.token), 422)
    expectError(await api.patch(`${INV}/items/${created.body.id}`, { reorderPoint: -1 }, manager.token), 422)
    expectError(await api.patch(`${INV}/items/nope`, { reorderPoint: 1 }, manager.token), 404)
  })

  test('lists page with a cursor', async () => {
    await item()
    await item()
    const first = await get('/items?limit=1')
    expectStatus(first, 200)
    expect(first.body.items.length).toBe(1)
    expect(typeof first.body.nextCursor).toBe('string')
    const second = await get(`/items?limit=1&cursor=${first.body.nextCursor}`)
    expectStatus(second, 200)
    expect(second.body.items[0].id).not.toBe(first.body.items[0].id)
    expectError(await get('/items?cursor=garbage'), 400, 'INVALID_CURSOR')
  })
})

// ---------------------------------------------------------------------------
// stock, adjustments, ledger
// ---------------------------------------------------------------------------

describe('adjustments and the ledger', () => {
  test('each adjustment is one movement; onHandAfter chains', async () => {
    const { sku, wh } = await stocked(0)
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 0, reserved: 0, available: 0 })

    const answers = []
    for (const delta of [10, -3, 5]) {
      const r = await adjust(sku, wh, delta, `count ${delta}`)
      expectStatus(r, 201)
      answers.push(r.body)
    }
    expect(answers.map((a) => a.onHand)).toEqual([10, 7, 12])
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 12, reserved: 0, available: 12 })

    const rows = await movements(sku, wh)
    expect(rows.map((m) => m.delta)).toEqual([5, -3, 10]) // newest first
    expect(rows.map((m) => m.onHandAfter)).toEqual([12, 7, 10])
    for (let i = 0; i < rows.length - 1; i++) expect(rows[i].onHandAfter - rows[i].delta).toBe(rows[i + 1].onHandAfter)
    expect(rows[rows.length - 1].onHandAfter - rows[rows.length - 1].delta).toBe(0)
    for (const m of rows) {
      expect(m.source).toBe(`manual:${manager.id}`)
      expect(m.sku).toBe(sku)
      expect(m.warehouse).toBe(wh)
      expect(new Date(m.at).toISOString()).toBe(m.at)
    }
    expect(rows[0].reason).toBe('count 5')
  })

  test('a decrease below available is refused and changes nothing', async () => {
    const { sku, wh } = await stocked(12)
    expectStatus(await reserve(sku, wh, 10), 201)
    const before = await level(sku, wh)
    const ledger = await movements(sku, wh)

    expectError(await adjust(sku, wh, -3), 409, 'INSUFFICIENT_STOCK') // only 2 available
    expectError(await adjust(sku, wh, -13), 409, 'INSUFFICIENT_STOCK')
    expect(await level(sku, wh)).toEqual(before)
    expect(await movements(sku, wh)).toEqual(ledger)

    expectStatus(await adjust(sku, wh, -2), 201)
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 10, reserved: 10, available: 0 })
  })

  test('unknown SKU or warehouse is 404; zero, fractional or missing delta is 422', async () => {
    const { sku, wh } = await stocked(1)
    expectError(await adjust('no-such-sku', wh, 1), 404, 'ITEM_NOT_FOUND')
    expectError(await adjust(sku, 'NOWHERE', 1), 404, 'WAREHOUSE_NOT_FOUND')
    expectError(await adjust(sku, wh, 0), 422)
    expectError(await adjust(sku, wh, 1.5), 422)
    expectError(await post('/adjustments', { sku, warehouse: wh, reason: 'x' }), 422)
    expectError(await post('/adjustments', { sku, warehouse: wh, delta: 1, reason: '' }), 422)
    expect((await movements(sku, wh)).length).toBe(1)
  })

  test('stock filters by SKU or warehouse', async () => {
    const { sku, wh } = await stocked(4)
    const other = await warehouse()
    expectStatus(await adjust(sku, other.code, 6), 201)
    const bySku = await get(`/stock?sku=${sku}`)
    expectStatus(bySku, 200)
    expect(bySku.body.items.map((l: any) => [l.warehouse, l.onHand]).sort()).toEqual([[other.code, 6], [wh, 4]].sort())
    const byWh = await get(`/stock?warehouse=${other.code}`)
    expect(byWh.body.items).toEqual([{ sku, warehouse: other.code, onHand: 6, reserved: 0, available: 6 }])
    expect((await get('/stock?sku=no-such-sku')).body.items).toEqual([])
  })
})

// ---------------------------------------------------------------------------
// reservations
// ---------------------------------------------------------------------------

describe('reservations', () => {
  test('50 concurrent reservations for the last 10 units: exactly 10 succeed, available never below zero', async () => {
    const { sku, wh } = await stocked(10)
    const replies = await Promise.all(Array.from({ length: 50 }, () => reserve(sku, wh, 1)))
    const created = replies.filter((r) => r.status === 201)
    const refused = replies.filter((r) => r.status === 409)
    expect(created.length).toBe(10)
    expect(refused.length).toBe(40)
    for (const r of refused) expectError(r, 409, 'OUT_OF_STOCK')
    for (const r of created) expect(r.body.status).toBe('active')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 10, reserved: 10, available: 0 })
    expectError(await reserve(sku, wh, 1), 409, 'OUT_OF_STOCK')
  })

  test('commit: onHand and reserved drop with one movement; committing again is a no-op', async () => {
    const { sku, wh } = await stocked(10)
    const r = await reserve(sku, wh, 3, { reference: 'order-42' })
    expectStatus(r, 201)
    expect(r.body.sku).toBe(sku)
    expect(r.body.warehouse).toBe(wh)
    expect(r.body.quantity).toBe(3)
    expect(r.body.reference).toBe('order-42')
    expect(new Date(r.body.expiresAt).getTime() - Date.now()).toBeGreaterThan(800_000) // default TTL 900 s
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 10, reserved: 3, available: 7 })
    expect((await movements(sku, wh)).length).toBe(1) // reserving does not move stock

    const committed = await post(`/reservations/${r.body.id}/commit`)
    expectStatus(committed, 200)
    expect(committed.body.status).toBe('committed')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 7, reserved: 0, available: 7 })
    const [last] = await movements(sku, wh)
    expect(last.delta).toBe(-3)
    expect(last.onHandAfter).toBe(7)
    expect(last.reason).toBe('reservation committed')
    expect(last.source).toBe(`reservation:${r.body.id}`)

    const again = await post(`/reservations/${r.body.id}/commit`)
    expectStatus(again, 200)
    expect(again.body).toEqual(committed.body)
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 7, reserved: 0, available: 7 })
    expect((await movements(sku, wh)).length).toBe(2)

    expectError(await api.del(`${INV}/reservations/${r.body.id}`, manager.token), 409, 'RESERVATION_COMMITTED')
    expectError(await post('/reservations/no-such-id/commit'), 404, 'RESERVATION_NOT_FOUND')
    expectError(await api.del(`${INV}/reservations/no-such-id`, manager.token), 404, 'RESERVATION_NOT_FOUND')
  })

  test('release: the stock is available again; releasing again is a no-op; a released one cannot be committed', async () => {
    const { sku, wh } = await stocked(5)
    const r = await reserve(sku, wh, 5)
    expectStatus(r, 201)
    expect((await level(sku, wh)).available).toBe(0)

    const released = await api.del(`${INV}/reservations/${r.body.id}`, manager.token)
    expectStatus(released, 200)
    expect(released.body.status).toBe('released')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 5, reserved: 0, available: 5 })

    const again = await api.del(`${INV}/reservations/${r.body.id}`, manager.token)
    expectStatus(again, 200)
    expect(again.body.status).toBe('released')
    expect((await level(sku, wh)).reserved).toBe(0)

    expectError(await post(`/reservations/${r.body.id}/commit`), 409, 'RESERVATION_RELEASED')
    expect((await movements(sku, wh)).length).toBe(1)
    const fetched = await get(`/reservations/${r.body.id}`)
    expectStatus(fetched, 200)
    expect(fetched.body.status).toBe('released')
  })

  test('a reservation never outlives its TTL: it expires, its stock returns, and it cannot be committed', async () => {
    const { sku, wh } = await stocked(4)
    const r = await reserve(sku, wh, 4, { ttlSeconds: 1 })
    expectStatus(r, 201)
    expect((await level(sku, wh)).available).toBe(0)
    await Bun.sleep(1_500)
    const fetched = await get(`/reservations/${r.body.id}`)
    expect(fetched.body.status).toBe('expired')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 4, reserved: 0, available: 4 })
    expectError(await post(`/reservations/${r.body.id}/commit`), 409, 'RESERVATION_EXPIRED')
    const released = await api.del(`${INV}/reservations/${r.body.id}`, manager.token)
    expectStatus(released, 200)
    expect(released.body.status).toBe('expired')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 4, reserved: 0, available: 4 })
    expect((await movements(sku, wh)).length).toBe(1)
  })

  test('the list filters by reference and status', async () => {
    const { sku, wh } = await stocked(3)
    const reference = unique('order')
    const r = await reserve(sku, wh, 1, { reference })
    expectStatus(r, 201)
    const list = await get(`/reservations?reference=${reference}&status=active`)
    expectStatus(list, 200)
    expect(list.body.items.map((x: any) => x.id)).toEqual([r.body.id])
    expect((await get(`/reservations?reference=${reference}&status=committed`)).body.items).toEqual([])
  })

  test('bad input: unknown SKU 404, quantity below 1 or fractional 422, TTL out of range 422', async () => {
    const { sku, wh } = await stocked(3)
    expectError(await reserve('no-such-sku', wh, 1), 404, 'ITEM_NOT_FOUND')
    expectError(await reserve(sku, 'NOWHERE', 1), 404, 'WAREHOUSE_NOT_FOUND')
    expectError(await reserve(sku, wh, -1), 422)
    expectError(await reserve(sku, wh, 0), 422)
    expectError(await reserve(sku, wh, 1.5), 422)
    expectError(await reserve(sku, wh, 1, { ttlSeconds: 0 }), 422)
    expectError(await reserve(sku, wh, 1, { reference: '' }), 422)
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 3, reserved: 0, available: 3 })
  })
})

describe('stock held by reference (the actions other plugins call)', () => {
  /** A ctx.call made by the `storefront` fixture plugin, as orders would make it. */
  async function call(action: string, input: Record<string, unknown>) {
    const r = await api.post('/api/v1/storefront/call', { action, input })
    expectStatus(r, 200)
    return r.body as { ok: boolean; result?: any; code?: string; status?: number; message?: string; details?: { path: string; message: string }[] }
  }

  test('reserveLines takes each line from one warehouse that has enough, else from several, fullest first', async () => {
    const [a, b] = [await warehouse(), await warehouse()]
    const [x, y] = [await item(), await item()]
    expectStatus(await adjust(x.sku, a.code, 3), 201)
    expectStatus(await adjust(x.sku, b.code, 8), 201)
    expectStatus(await adjust(y.sku, a.code, 4), 201)
    expectStatus(await adjust(y.sku, b.code, 2), 201)
    const reference = unique('checkout')
    // x: 6 fits in b alone; y: 5 needs a (4, the fuller) and b (1).
    const r = await call('inventory.reserveLines', { reference, lines: [{ sku: x.sku, quantity: 6 }, { sku: y.sku, quantity: 5 }] })
    expect(r.ok).toBe(true)
    const held = r.result.reservations.map((v: any) => [v.sku, v.warehouse, v.quantity, v.status, v.reference])
    expect(held.sort()).toEqual(
      [[x.sku, b.code, 6, 'active', reference], [y.sku, a.code, 4, 'active', reference], [y.sku, b.code, 1, 'active', reference]].sort(),
    )
    expect(await level(x.sku, b.code)).toMatchObject({ onHand: 8, reserved: 6, available: 2 })
    expect(await level(y.sku, a.code)).toMatchObject({ onHand: 4, reserved: 4, available: 0 })
    expect(await level(y.sku, b.code)).toMatchObject({ onHand: 2, reserved: 1, available: 1 })

    // The same reference again returns the first reservations and holds nothing more.
    const again = await call('inventory.reserveLines', { reference, lines: [{ sku: x.sku, quantity: 6 }, { sku: y.sku, quantity: 5 }] })
    expect(again.result.reservations.map((v: any) => v.id).sort()).toEqual(r.result.reservations.map((v: any) => v.id).sort())
    expect(await level(x.sku, b.code)).toMatchObject({ reserved: 6 })

    // Commit: every reservation's stock leaves, in the ledger; committing again changes nothing.
    const committed = await call('inventory.commitReference', { reference })
    expect(committed.result.reservations.every((v: any) => v.status === 'committed')).toBe(true)
    expect(await level(y.sku, a.code)).toMatchObject({ onHand: 0, reserved: 0, available: 0 })
    expect(await level(y.sku, b.code)).toMatchObject({ onHand: 1, reserved: 0, available: 1 })
    expect((await movements(x.sku, b.code))[0]).toMatchObject({ delta: -6, onHandAfter: 2, reason: 'reservation committed' })
    expect((await call('inventory.commitReference', { reference })).ok).toBe(true)
    expect(await level(x.sku, b.code)).toMatchObject({ onHand: 2, reserved: 0 })
    // Releasing a committed reference leaves it committed.
    const released = await call('inventory.releaseReference', { reference })
    expect(released.result.reservations.every((v: any) => v.status === 'committed')).toBe(true)
  })

  test('reserveLines is all or nothing: one short line holds nothing and names the short SKU', async () => {
    const { sku, wh } = await stocked(5)
    const other = await stocked(1)
    const r = await call('inventory.reserveLines', { reference: unique('checkout'), lines: [{ sku, quantity: 5 }, { sku: other.sku, quantity: 2 }] })
    expect(r).toMatchObject({ ok: false, status: 409, code: 'OUT_OF_STOCK' })
    expect(r.details).toEqual([{ path: '/lines/1', message: `${other.sku}: 1 available, 2 requested` }])
    expect(await level(sku, wh)).toMatchObject({ onHand: 5, reserved: 0 })
    expect(await level(other.sku, other.wh)).toMatchObject({ onHand: 1, reserved: 0 })
    // Two lines of one SKU count together.
    const twice = await call('inventory.reserveLines', { reference: unique('checkout'), lines: [{ sku, quantity: 3 }, { sku, quantity: 3 }] })
    expect(twice).toMatchObject({ ok: false, code: 'OUT_OF_STOCK' })
    const unknown = await call('inventory.reserveLines', { reference: unique('checkout'), lines: [{ sku: 'NO-SUCH-SKU', quantity: 1 }] })
    expect(unknown).toMatchObject({ ok: false, status: 404, code: 'ITEM_NOT_FOUND' })
    const invalid = await call('inventory.reserveLines', { reference: unique('checkout'), lines: [] })
    expect(invalid).toMatchObject({ ok: false, status: 422 })
  })

  test('30 checkouts racing for the last 10 units across two warehouses: exactly 10 hold stock', async () => {
    const it = await item()
    const [a, b] = [await warehouse(), await warehouse()]
    expectStatus(await adjust(it.sku, a.code, 6), 201)
    expectStatus(await adjust(it.sku, b.code, 4), 201)
    const replies = await Promise.all(
      Array.from({ length: 30 }, () => call('inventory.reserveLines', { reference: unique('race'), lines: [{ sku: it.sku, quantity: 1 }] })),
    )
    expect(replies.filter((r) => r.ok).length).toBe(10)
    expect(replies.filter((r) => !r.ok).every((r) => r.code === 'OUT_OF_STOCK')).toBe(true)
    expect(await level(it.sku, a.code)).toMatchObject({ onHand: 6, reserved: 6, available: 0 })
    expect(await level(it.sku, b.code)).toMatchObject({ onHand: 4, reserved: 4, available: 0 })
  })

  test('releaseReference gives everything back; a released reference cannot be committed', async () => {
    const { sku, wh } = await stocked(4)
    const reference = unique('checkout')
    expect((await call('inventory.reserveLines', { reference, lines: [{ sku, quantity: 4 }] })).ok).toBe(true)
    const released = await call('inventory.releaseReference', { reference })
    expect(released.result.reservations.map((v: any) => v.status)).toEqual(['released'])
    expect(await level(sku, wh)).toMatchObject({ onHand: 4, reserved: 0, available: 4 })
    expect((await call('inventory.releaseReference', { reference })).ok).toBe(true)
    expect(await call('inventory.commitReference', { reference })).toMatchObject({ ok: false, status: 409, code: 'RESERVATION_RELEASED' })
    expect(await call('inventory.commitReference', { reference: unique('never') })).toMatchObject({ ok: false, status: 404 })
  })

  test('a reference whose reservation lapsed commits nothing', async () => {
    const { sku, wh } = await stocked(3)
    const other = await stocked(3)
    const reference = unique('checkout')
    const held = await call('inventory.reserveLines', { reference, lines: [{ sku, quantity: 1 }, { sku: other.sku, quantity: 1 }], ttlSeconds: 1 })
    expect(held.ok).toBe(true)
    await Bun.sleep(1_100)
    expect(await call('inventory.commitReference', { reference })).toMatchObject({ ok: false, status: 409, code: 'RESERVATION_EXPIRED' })
    expect(await level(sku, wh)).toMatchObject({ onHand: 3, reserved: 0 })
    expect(await level(other.sku, other.wh)).toMatchObject({ onHand: 3, reserved: 0 })
  })

  test('restock puts goods back through the ledger once per reference', async () => {
    const { sku, wh } = await stocked(2)
    const reference = unique('cancel')
    const lines = [{ sku, warehouse: wh, quantity: 3 }]
    const first = await call('inventory.restock', { reference, reason: 'order cancelled', lines })
    expect(first.result.items).toEqual([{ sku, warehouse: wh, onHand: 5, reserved: 0, available: 5 }])
    const again = await call('inventory.restock', { reference, reason: 'order cancelled', lines })
    expect(again.result.items).toEqual([{ sku, warehouse: wh, onHand: 5, reserved: 0, available: 5 }])
    const [last, ...rest] = await movements(sku, wh)
    expect(last).toMatchObject({ delta: 3, onHandAfter: 5, reason: 'order cancelled', source: `restock:${reference}` })
    expect(rest.length).toBe(1)
    expect(await call('inventory.restock', { reference: unique('r'), reason: 'x', lines: [{ sku, warehouse: 'NOPE', quantity: 1 }] })).toMatchObject({
      ok: false,
      status: 404,
      code: 'WAREHOUSE_NOT_FOUND',
    })
    expect((await level(sku, wh)).onHand).toBe(5)
  })
})

describe('expiry without the sweeper', () => {
  // The sweeper runs once a minute here: what is checked is the expiry applied on read and on commit.
  let lazy: TestServer
  let lazyApi: Api
  let token: string
  beforeAll(async () => {
    lazy = await startServer({ RESERVATION_SWEEP_MS: '60000' })
    lazyApi = client(lazy.url)
    token = (await userWithRole(lazy.url, 'manager')).token
  })
  afterAll(async () => {
    await lazy?.stop()
  })

  test('committing a reservation past its expiry is 409 and releases its stock', async () => {
    const sku = unique('LAZY')
    expectStatus(await lazyApi.post(`${INV}/warehouses`, { code: 'L1', name: 'Lazy' }, token), 201)
    expectStatus(await lazyApi.post(`${INV}/items`, { sku, name: 'Lazy thing' }, token), 201)
    expectStatus(await lazyApi.post(`${INV}/adjustments`, { sku, warehouse: 'L1', delta: 2, reason: 'in' }, token), 201)
    const r = await lazyApi.post(`${INV}/reservations`, { sku, warehouse: 'L1', quantity: 2, reference: 'o-1', ttlSeconds: 1 }, token)
    expectStatus(r, 201)
    await Bun.sleep(1_100)
    expectError(await lazyApi.post(`${INV}/reservations/${r.body.id}/commit`, undefined, token), 409, 'RESERVATION_EXPIRED')
    const stock = await lazyApi.get(`${INV}/stock?sku=${sku}&warehouse=L1`, token)
    expect(stock.body.items).toEqual([{ sku, warehouse: 'L1', onHand: 2, reserved: 0, available: 2 }])
    // A new reservation finds the stock free even though no sweep has run.
    const r2 = await lazyApi.post(`${INV}/reservations`, { sku, warehouse: 'L1', quantity: 2, reference: 'o-2', ttlSeconds: 1 }, token)
    expectStatus(r2, 201)
    await Bun.sleep(1_100)
    const again = await lazyApi.post(`${INV}/reservations`, { sku, warehouse: 'L1', quantity: 2, reference: 'o-3' }, token)
    expectStatus(again, 201)
    expect((await lazyApi.get(`${INV}/reservations/${r2.body.id}`, token)).body.status).toBe('expired')
  })
})

// ---------------------------------------------------------------------------
// low-stock alerts
// ---------------------------------------------------------------------------

describe('low-stock alerts', () => {
  const lowAlerts = async (sku: string) => {
    const r = await get(`/alerts?sku=${sku}`)
    expectStatus(r, 200)
    return r.body.items as { id: string; type: string; sku: string; warehouse: string; deviceId: string | null; message: string; createdAt: string }[]
  }

  test('raised once when available falls to the reorder point, again only after it recovered above it', async () => {
    const { sku, wh } = await stocked(0, { reorderPoint: 5, reorderQuantity: 20 })
    expectStatus(await adjust(sku, wh, 10), 201)
    expectStatus(await adjust(sku, wh, -3), 201) // 7
    expect(await lowAlerts(sku)).toEqual([])
    expectStatus(await adjust(sku, wh, -2), 201) // 5: at the reorder point
    const [alert] = await lowAlerts(sku)
    expect(alert.type).toBe('low_stock')
    expect(alert.sku).toBe(sku)
    expect(alert.warehouse).toBe(wh)
    expect(alert.deviceId).toBeNull()
    expect(alert.message.length).toBeGreaterThan(0)
    expect(new Date(alert.createdAt).toISOString()).toBe(alert.createdAt)

    expectStatus(await adjust(sku, wh, -1), 201) // 4: still low, no second alert
    expectStatus(await reserve(sku, wh, 1), 201) // 3 available
    expect((await lowAlerts(sku)).length).toBe(1)

    expectStatus(await adjust(sku, wh, 10), 201) // 13 available: recovered
    expect((await lowAlerts(sku)).length).toBe(1)
    expectStatus(await adjust(sku, wh, -8), 201) // 5 again
    const alerts = await lowAlerts(sku)
    expect(alerts.length).toBe(2)
    expect(alerts[0].id > alerts[1].id).toBe(true) // newest first

    const all = await get('/alerts?type=low_stock&limit=200')
    expectStatus(all, 200)
    expect(all.body.items.map((a: any) => a.id)).toContain(alerts[0].id)
  })

  test('a reservation that takes available to the reorder point raises it too', async () => {
    const { sku, wh } = await stocked(10, { reorderPoint: 2 })
    expectStatus(await reserve(sku, wh, 8), 201)
    expect((await lowAlerts(sku)).length).toBe(1)
  })
})

// ---------------------------------------------------------------------------
// suppliers and purchase orders
// ---------------------------------------------------------------------------

describe('purchase orders', () => {
  test('draft → ordered → received adds stock with a movement; other transitions are 409', async () => {
    const supplier = await post('/suppliers', { name: unique('Supplier') })
    expectStatus(supplier, 201)
    expect(supplier.body.email).toBeNull()
    const { sku, wh } = await stocked(2)
    const other = await item()

    const po = await post('/purchase-orders', {
      supplierId: supplier.body.id,
      warehouse: wh,
      lines: [
        { sku, quantity: 30 },
        { sku: other.sku, quantity: 5 },
      ],
    })
    expectStatus(po, 201)
    expect(po.body.status).toBe('draft')
    expect(po.body.lines).toEqual([
      { sku, quantity: 30 },
      { sku: other.sku, quantity: 5 },
    ])
    const id = po.body.id

    const early = await post(`/purchase-orders/${id}/receive`)
    expectError(early, 409, 'INVALID_STATUS_TRANSITION')
    expect(early.body.error.message).toContain('draft')

    const ordered = await post(`/purchase-orders/${id}/order`)
    expectStatus(ordered, 200)
    expect(ordered.body.status).toBe('ordered')
    const twice = await post(`/purchase-orders/${id}/order`)
    expectError(twice, 409, 'INVALID_STATUS_TRANSITION')
    expect(twice.body.error.message).toContain('ordered')
    expect((await level(sku, wh)).onHand).toBe(2)

    const received = await post(`/purchase-orders/${id}/receive`)
    expectStatus(received, 200)
    expect(received.body.status).toBe('received')
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 32, reserved: 0, available: 32 })
    expect((await level(other.sku, wh)).onHand).toBe(5)
    const [m] = await movements(sku, wh)
    expect(m.delta).toBe(30)
    expect(m.onHandAfter).toBe(32)
    expect(m.source).toBe(`po:${id}`)

    const again = await post(`/purchase-orders/${id}/receive`)
    expectError(again, 409, 'INVALID_STATUS_TRANSITION')
    expect(again.body.error.message).toContain('received')
    expectError(await post(`/purchase-orders/${id}/cancel`), 409, 'INVALID_STATUS_TRANSITION')
    expect((await level(sku, wh)).onHand).toBe(32)

    expect((await get(`/purchase-orders/${id}`)).body.status).toBe('received')
    const list = await get(`/purchase-orders?supplierId=${supplier.body.id}`)
    expect(list.body.items.map((p: any) => p.id)).toEqual([id])
    expectError(await post('/purchase-orders/no-such-id/order'), 404, 'PURCHASE_ORDER_NOT_FOUND')
  })

  test('a cancelled order cannot be received', async () => {
    const supplier = await post('/suppliers', { name: 'Cancel Co' })
    const { sku, wh } = await stocked(0)
    const po = await post('/purchase-orders', { supplierId: supplier.body.id, warehouse: wh, lines: [{ sku, quantity: 1 }] })
    expectStatus(await post(`/purchase-orders/${po.body.id}/cancel`), 200)
    expectError(await post(`/purchase-orders/${po.body.id}/receive`), 409, 'INVALID_STATUS_TRANSITION')
    expect((await level(sku, wh)).onHand).toBe(0)
  })

  test('bad input: unknown supplier, warehouse or SKU 404; duplicate or empty lines and bad quantities 422', async () => {
    const supplier = await post('/suppliers', { name: 'Strict Ltd' })
    const { sku, wh } = await stocked(0)
    const base = { supplierId: supplier.body.id, warehouse: wh, lines: [{ sku, quantity: 1 }] }
    expectError(await post('/purchase-orders', { ...base, supplierId: 'nope' }), 404, 'SUPPLIER_NOT_FOUND')
    expectError(await post('/purchase-orders', { ...base, warehouse: 'NOWHERE' }), 404, 'WAREHOUSE_NOT_FOUND')
    expectError(await post('/purchase-orders', { ...base, lines: [{ sku: 'no-such-sku', quantity: 1 }] }), 404, 'ITEM_NOT_FOUND')
    expectError(await post('/purchase-orders', { ...base, lines: [{ sku, quantity: 1 }, { sku, quantity: 2 }] }), 422, 'DUPLICATE_LINE')
    expectError(await post('/purchase-orders', { ...base, lines: [] }), 422)
    expectError(await post('/purchase-orders', { ...base, lines: [{ sku, quantity: -4 }] }), 422)
  })
})

// ---------------------------------------------------------------------------
// roles
// ---------------------------------------------------------------------------

describe('roles', () => {
  test('customers may read but not write; no token is 401', async () => {
    const { sku, wh } = await stocked(5)
    const c = customer.token
    expectError(await post('/warehouses', { code: unique('C'), name: 'x' }, c), 403)
    expectError(await post('/items', { sku: unique('C'), name: 'x' }, c), 403)
    expectError(await post('/adjustments', { sku, warehouse: wh, delta: -5, reason: 'mine now' }, c), 403)
    expectError(await post('/reservations', { sku, warehouse: wh, quantity: 1, reference: 'x' }, c), 403)
    expectError(await post('/suppliers', { name: 'x' }, c), 403)
    expectError(await post('/purchase-orders', { supplierId: 'x', warehouse: wh, lines: [{ sku, quantity: 1 }] }, c), 403)
    expectError(await api.patch(`${INV}/items/${sku}`, { reorderPoint: 1 }, c), 403)
    expect(await level(sku, wh)).toEqual({ sku, warehouse: wh, onHand: 5, reserved: 0, available: 5 })

    expectStatus(await get(`/stock?sku=${sku}`, c), 200)
    expectStatus(await get('/warehouses', c), 200)
    expectStatus(await get(`/items/${sku}`, c), 200)
    expectStatus(await get('/alerts', c), 200)
    expectStatus(await get(`/movements?sku=${sku}`, c), 200)
    expectError(await api.get(`${INV}/stock`), 401)
    expectError(await api.post(`${INV}/adjustments`, { sku, warehouse: wh, delta: 1, reason: 'x' }), 401)
  })
})
