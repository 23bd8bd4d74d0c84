/**
 * The checkout saga from the outside, with every plugin in one real server: the whole journey
 * (cart → checkout → paid → ship → deliver → return → receive) with stock, reservations, payments
 * and the ledger checked to agree at every step; declines, provider timeouts and errors leaving
 * nothing reserved or held; idempotency by key and by cart; and 100 customers racing for the last
 * 10 units. Runs on embedded defaults and, with TEST_DATABASE_URL / TEST_REDIS_URL, on PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { client, expectError, expectStatus, startServer, type TestServer, variant } from './harness'
import { openShop, type Shop, unique } from './shop'

let server: TestServer
let shop: Shop

beforeAll(async () => {
  server = await startServer({
    // Long enough that no tok_ok authorization times out while 100 checkouts race on a busy machine.
    PAYMENTS_PROVIDER_TIMEOUT_MS: '2000',
    PAYMENTS_SANDBOX_SLOW_MS: '3000',
    PAYMENTS_BREAKER_FAILURES: '1000',
    RATE_LIMIT_IP_PER_MIN: '100000',
  })
  shop = await openShop(server.url)
})
afterAll(async () => {
  await server?.stop()
})

const ORD = '/api/v1/orders'

describe(`checkout journey (${variant})`, () => {
  test('cart → checkout → paid → ship → deliver → return a line → receive: stock, reservations, payments and the ledger agree throughout', async () => {
    const { api, manager } = shop
    const w1 = await shop.warehouse()
    const w2 = await shop.warehouse()
    const lamp = await shop.product({ price: 1250, stock: { [w1]: 5 }, name: 'Desk lamp' })
    // 4 bulbs: no warehouse has 4, so they come from two.
    const bulb = await shop.product({ price: 300, stock: { [w1]: 2, [w2]: 3 }, name: 'Bulb' })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [
      [lamp, 2],
      [bulb, 4],
    ])

    const cart = await api.get(`${ORD}/carts/${cartId}`, customer.token)
    expectStatus(cart, 200)
    expect(cart.body.total).toBe(2 * 1250 + 4 * 300)
    expect(cart.body.currency).toBe('EUR')
    expect(cart.body.items.map((i: any) => [i.sku, i.name, i.unitPrice, i.quantity, i.lineTotal])).toEqual([
      [lamp, 'Desk lamp', 1250, 2, 2500],
      [bulb, 'Bulb', 300, 4, 1200],
    ])

    // ---- checkout
    const placed = await shop.checkout(customer.token, cartId)
    expectStatus(placed, 201)
    const order = placed.body
    expect(order.status).toBe('paid')
    expect(order.customerId).toBe(customer.id)
    expect(order.totals).toEqual({ subtotal: 3700, total: 3700, refunded: 0 })
    expect(order.currency).toBe('EUR')
    const lampLine = order.lines.find((l: any) => l.sku === lamp)
    const bulbLine = order.lines.find((l: any) => l.sku === bulb)
    expect([lampLine.name, lampLine.unitPrice, lampLine.quantity, lampLine.lineTotal]).toEqual(['Desk lamp', 1250, 2, 2500])
    expect(lampLine.allocations).toEqual([{ warehouse: w1, quantity: 2 }])
    expect(bulbLine.allocations.reduce((n: number, a: any) => n + a.quantity, 0)).toBe(4)
    expect(bulbLine.allocations.length).toBe(2)
    expect(order.history.map((h: any) => [h.from, h.to])).toEqual([[null, 'paid']])
    expect(order.payment).toEqual({ id: order.payment.id, status: 'captured', amount: 3700, captured: 3700, refunded: 0 })
    expect(order.shippingAddress.city).toBe('London')

    // Stock left: onHand dropped, nothing stays reserved; every reservation of the checkout is committed.
    expect(await shop.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 3, reserved: 0, available: 3 })
    expect(await shop.stock(bulb)).toEqual({ onHand: 1, reserved: 0, available: 1 })
    const held = await shop.reservations({ reference: order.checkoutId })
    expect(held.length).toBe(3)
    expect(held.every((r) => r.status === 'committed')).toBe(true)
    const lampMoves = await shop.movements(lamp)
    expect(lampMoves.map((m) => [m.delta, m.onHandAfter])).toEqual([
      [-2, 3],
      [5, 5],
    ])
    expect((await shop.movements(bulb)).filter((m) => m.delta < 0).reduce((n, m) => n + m.delta, 0)).toBe(-4)
    const payment = await shop.payment(order.payment.id)
    expect(payment.reference).toBe(order.checkoutId)
    expect(payment.events.map((e) => [e.kind, e.amount])).toEqual([
      ['authorized', 3700],
      ['captured', 3700],
    ])
    // The cart was consumed by the checkout.
    expect((await api.get(`${ORD}/carts/${cartId}`, customer.token)).body.status).toBe('checked_out')

    // ---- ship, deliver
    const shipped = await api.post(`${ORD}/orders/${order.id}/ship`, undefined, manager.token)
    expectStatus(shipped, 200)
    expect(shipped.body.status).toBe('shipped')
    const delivered = await api.post(`${ORD}/orders/${order.id}/deliver`, undefined, manager.token)
    expectStatus(delivered, 200)
    expect(delivered.body.status).toBe('delivered')
    expect(delivered.body.history.map((h: any) => [h.from, h.to])).toEqual([
      [null, 'paid'],
      ['paid', 'shipped'],
      ['shipped', 'delivered'],
    ])
    expect(await shop.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 3, reserved: 0, available: 3 })

    // ---- return one lamp
    const asked = await api.post(`${ORD}/orders/${order.id}/returns`, { lines: [{ sku: lamp, quantity: 1 }], reason: 'too bright' }, customer.token)
    expectStatus(asked, 201)
    expect(asked.body.status).toBe('requested')
    expect(asked.body.amount).toBe(1250)
    expect(asked.body.lines).toEqual([{ sku: lamp, quantity: 1, unitPrice: 1250, warehouses: [{ warehouse: w1, quantity: 1 }] }])
    // Asking is not receiving: nothing moves yet.
    expect(await shop.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 3, reserved: 0, available: 3 })
    expect((await shop.payment(order.payment.id)).refunded).toBe(0)
    // Not more than bought minus already returned.
    expectError(await api.post(`${ORD}/orders/${order.id}/returns`, { lines: [{ sku: lamp, quantity: 2 }], reason: 'again' }, customer.token), 422, 'RETURN_EXCEEDS_PURCHASE')

    const received = await api.post(`${ORD}/returns/${asked.body.id}/receive`, undefined, manager.token)
    expectStatus(received, 200)
    expect(received.body.status).toBe('received')
    expect(await shop.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 4, reserved: 0, available: 4 })
    const back = (await shop.movements(lamp))[0]
    expect([back.delta, back.onHandAfter, back.source]).toEqual([1, 4, `restock:return:${asked.body.id}`])
    const refundedOnce = await shop.payment(order.payment.id)
    expect([refundedOnce.status, refundedOnce.captured, refundedOnce.refunded]).toEqual(['partially_refunded', 3700, 1250])
    let now = await shop.order(order.id, customer.token)
    expect(now.status).toBe('delivered')
    expect(now.totals.refunded).toBe(1250)
    expect(now.lines.find((l: any) => l.sku === lamp).returned).toBe(1)
    expect(now.payment.refunded).toBe(1250)
    expectError(await api.post(`${ORD}/returns/${asked.body.id}/receive`, undefined, manager.token), 409, 'RETURN_ALREADY_RECEIVED')

    // ---- return everything else: the order becomes returned and is fully refunded
    const rest = await api.post(
      `${ORD}/orders/${order.id}/returns`,
      { lines: [{ sku: lamp, quantity: 1 }, { sku: bulb, quantity: 4 }], reason: 'changed my mind' },
      customer.token,
    )
    expectStatus(rest, 201)
    expect(rest.body.amount).toBe(1250 + 1200)
    expectStatus(await api.post(`${ORD}/returns/${rest.body.id}/receive`, undefined, manager.token), 200)
    now = await shop.order(order.id, customer.token)
    expect(now.status).toBe('returned')
    expect(now.totals.refunded).toBe(3700)
    expect([now.history.at(-1).from, now.history.at(-1).to]).toEqual(['delivered', 'returned'])
    const refunded = await shop.payment(order.payment.id)
    expect([refunded.status, refunded.refunded]).toEqual(['refunded', 3700])
    expect(refunded.events.map((e) => e.kind)).toEqual(['authorized', 'captured', 'refunded', 'refunded'])
    expect(await shop.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 5, reserved: 0, available: 5 })
    expect(await shop.stock(bulb)).toEqual({ onHand: 5, reserved: 0, available: 5 })
    // Every change of onHand is in the ledger: it sums to what is on hand.
    for (const sku of [lamp, bulb]) expect((await shop.movements(sku)).reduce((n, m) => n + m.delta, 0)).toBe((await shop.stock(sku)).onHand)
  })
})

describe(`checkout failures leave nothing reserved or held (${variant})`, () => {
  async function failedCheckout(card: string) {
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 999, stock: { [w]: 5 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 2]])
    const key = unique('key')
    const r = await shop.checkout(customer.token, cartId, card, key)
    const [attempt] = await shop.checkouts(customer.token, cartId)
    return { r, w, sku, customer, cartId, key, attempt }
  }

  async function expectNothingLeft(f: Awaited<ReturnType<typeof failedCheckout>>) {
    expect(f.attempt.status).toBe('compensated')
    expect(f.attempt.orderId).toBeNull()
    expect((await shop.api.get(`${ORD}/orders`, f.customer.token)).body.items).toEqual([])
    expect(await shop.level(f.sku, f.w)).toEqual({ sku: f.sku, warehouse: f.w, onHand: 5, reserved: 0, available: 5 })
    const held = await shop.reservations({ reference: f.attempt.id })
    expect(held.every((r) => r.status === 'released')).toBe(true)
    for (const p of await shop.paymentsOf(f.attempt.id)) expect(['declined', 'failed', 'voided']).toContain(p.status)
    // No ledger movement: stock never left.
    expect((await shop.movements(f.sku)).length).toBe(1)
    // The cart is open again for another try.
    expect((await shop.api.get(`${ORD}/carts/${f.cartId}`, f.customer.token)).body.status).toBe('open')
  }

  test('a declined card: 402 PAYMENT_DECLINED, no order, reservations released', async () => {
    const f = await failedCheckout('tok_declined')
    expectError(f.r, 402, 'PAYMENT_DECLINED')
    await expectNothingLeft(f)
    expect((await shop.reservations({ reference: f.attempt.id })).length).toBe(1)
    expect((await shop.paymentsOf(f.attempt.id)).map((p) => p.status)).toEqual(['declined'])
    // The same key gets the same answer; another card with a new key goes through.
    expectError(await shop.checkout(f.customer.token, f.cartId, 'tok_declined', f.key), 402, 'PAYMENT_DECLINED')
    const retried = await shop.checkout(f.customer.token, f.cartId, 'tok_ok')
    expectStatus(retried, 201)
    expect(await shop.level(f.sku, f.w)).toEqual({ sku: f.sku, warehouse: f.w, onHand: 3, reserved: 0, available: 3 })
  })

  test('a provider timeout (tok_slow): 503, the authorization voided by key, nothing reserved', async () => {
    const f = await failedCheckout('tok_slow')
    expectError(f.r, 503, 'PAYMENT_PROVIDER_UNAVAILABLE')
    await expectNothingLeft(f)
    const [payment] = await shop.paymentsOf(f.attempt.id)
    expect(payment.events.map((e) => e.kind)).toEqual(['failed', 'voided'])
    // The provider's late approval (3 s after the request) changes nothing.
    await Bun.sleep(2000)
    await expectNothingLeft(f)
    expect((await shop.paymentsOf(f.attempt.id)).map((p) => p.status)).toEqual(['failed'])
  })

  test('a provider error (tok_error): 503 compensated', async () => {
    const f = await failedCheckout('tok_error')
    expectError(f.r, 503, 'PAYMENT_PROVIDER_UNAVAILABLE')
    await expectNothingLeft(f)
  })

  test('out of stock: 409 OUT_OF_STOCK, nothing authorized', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ stock: { [w]: 1 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 2]])
    expectError(await shop.checkout(customer.token, cartId), 409, 'OUT_OF_STOCK')
    const [attempt] = await shop.checkouts(customer.token, cartId)
    expect(attempt.status).toBe('compensated')
    expect(await shop.paymentsOf(attempt.id)).toEqual([])
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 1, reserved: 0, available: 1 })
  })

  test('a product the catalog sells but no warehouse stocks is out of stock', async () => {
    const sku = unique('SKU')
    expectStatus(await shop.api.post('/api/v1/catalog/products', { sku, name: 'Ghost', price: 100, currency: 'EUR' }, shop.manager.token), 201)
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    expectError(await shop.checkout(customer.token, cartId), 409, 'OUT_OF_STOCK')
  })
})

describe(`checkout idempotency (${variant})`, () => {
  test('the same checkout request sent twice with one key makes one order', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ stock: { [w]: 5 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    const key = unique('key')
    const first = await shop.checkout(customer.token, cartId, 'tok_ok', key)
    const again = await shop.checkout(customer.token, cartId, 'tok_ok', key)
    expectStatus(first, 201)
    expectStatus(again, 201)
    expect(again.body.id).toBe(first.body.id)
    // Another session of the same customer misses the edge's replay cache; the key is in the database.
    const login = await shop.api.post('/api/v1/auth/login', { email: customer.email, password: customer.password })
    const fromElsewhere = await shop.checkout(login.body.accessToken, cartId, 'tok_ok', key)
    expectStatus(fromElsewhere, 201)
    expect(fromElsewhere.body.id).toBe(first.body.id)
    expect((await shop.api.get(`${ORD}/orders`, customer.token)).body.items.length).toBe(1)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 4, reserved: 0, available: 4 })
    // The same key with another request is refused.
    const other = await shop.cart(customer.token, [[sku, 1]])
    expectError(await shop.checkout(login.body.accessToken, other, 'tok_ok', key), 422, 'IDEMPOTENCY_KEY_REUSED')
  })

  test('two keys on the same cart make one order: the cart is consumed', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ stock: { [w]: 5 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    expectStatus(await shop.checkout(customer.token, cartId), 201)
    expectError(await shop.checkout(customer.token, cartId), 409, 'CART_CHECKED_OUT')
    // At the same time, too.
    const cart2 = await shop.cart(customer.token, [[sku, 1]])
    const both = await Promise.all([shop.checkout(customer.token, cart2), shop.checkout(customer.token, cart2)])
    expect(both.map((r) => r.status).sort()).toEqual([201, 409])
    expect((await shop.api.get(`${ORD}/orders`, customer.token)).body.items.length).toBe(2)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 3, reserved: 0, available: 3 })
    expectError(await shop.api.post(`${ORD}/carts/${cartId}/items`, { sku, quantity: 1 }, customer.token), 409, 'CART_CHECKED_OUT')
  })
})

describe(`the race for the last units (${variant})`, () => {
  test('100 customers for the last 10 units: exactly 10 orders, 90 × 409, stock 0, nothing reserved', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 5000, stock: { [w]: 10 } })
    const customers = await Promise.all(Array.from({ length: 100 }, () => shop.customer()))
    const carts = await Promise.all(customers.map((c) => shop.cart(c.token, [[sku, 1]])))
    const answers = await Promise.all(customers.map((c, i) => shop.checkout(c.token, carts[i])))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 201).length).toBe(10)
    expect(statuses.filter((s) => s === 409).length).toBe(90)
    for (const r of answers.filter((a) => a.status === 409)) expectError(r, 409, 'OUT_OF_STOCK')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 0, reserved: 0, available: 0 })
    expect((await shop.reservations({ sku, status: 'active' })).length).toBe(0)
    expect((await shop.reservations({ sku, status: 'committed' })).length).toBe(10)
    const all = await shop.api.get(`${ORD}/orders?limit=200&status=paid`, shop.manager.token)
    const mine = all.body.items.filter((o: any) => customers.some((c) => c.id === o.customerId))
    expect(mine.length).toBe(10)
    for (const o of answers.filter((a) => a.status === 201)) expect(o.body.payment.status).toBe('captured')
  }, 60_000)
})

describe(`checkout input (${variant})`, () => {
  test('bad input of every kind is refused with the envelope and changes nothing', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ stock: { [w]: 5 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    const url = `${ORD}/carts/${cartId}/checkout`
    const address = { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'GB' }
    for (const body of [
      {},
      { payment: { method: 'card', token: 'tok_ok' } },
      { payment: { method: 'cash', token: 'tok_ok' }, shippingAddress: address },
      { payment: { method: 'card', token: '' }, shippingAddress: address },
      { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: { ...address, country: 'gb' } },
      { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: { ...address, city: '   ' } },
      { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: address, total: 1 },
      { payment: { method: 'card', token: 'tok_ok', amount: 1 }, shippingAddress: address },
    ])
      expectError(await shop.api.post(url, body, customer.token), 422)
    expectError(await client(server.url).post(url, '{"payment":', customer.token), 400)
    expectError(await shop.api.post(url, { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: address }), 401)
    expectError(await shop.api.post(url, { payment: { method: 'card', token: 'tok_ok' }, shippingAddress: address }, customer.token, { 'idempotency-key': 'bad key with spaces' }), 422)
    // Someone else's cart does not exist for them.
    const stranger = await shop.customer()
    expectError(await shop.checkout(stranger.token, cartId), 404, 'CART_NOT_FOUND')
    expect(await shop.checkouts(customer.token, cartId)).toEqual([])
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 5, reserved: 0, available: 5 })
  })

  test('an empty cart, or one holding what is no longer sold, is 422 and reserves nothing', async () => {
    const customer = await shop.customer()
    expectError(await shop.checkout(customer.token, await shop.cart(customer.token)), 422, 'CART_EMPTY')
    const w = await shop.warehouse()
    const sku = await shop.product({ stock: { [w]: 5 } })
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    expectStatus(await shop.api.post(`/api/v1/catalog/products/${sku}/deactivate`, undefined, shop.manager.token), 200)
    expect((await shop.api.get(`${ORD}/carts/${cartId}`, customer.token)).body.items[0].purchasable).toBe(false)
    expectError(await shop.checkout(customer.token, cartId), 422, 'PRODUCT_UNAVAILABLE')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 5, reserved: 0, available: 5 })
  })
})
