/**
 * The commerce part of the black-box suite (CONTRACT.md §7, issue 6), registered once per topology:
 * a manager builds the shop (categories, products, stock), a customer browses, searches, fills a
 * cart and checks out, a manager fulfils, ships and delivers, the customer returns a line and the
 * manager receives it; at every step stock, reservations, the payment and the ledger are read back
 * through their plugins' HTTP routes and must agree. Then the failures: a declined card, a provider
 * error, a provider timeout, the same checkout sent twice, and customers racing for the last units.
 * Only the public HTTP URL is used (the gateway in split mode).
 */
import { expect, test } from 'bun:test'
import { client, expectError, expectStatus } from '../harness'
import { type Attempt, openShop, type Shop, unique, uniqueWord } from '../shop'
import type { Topology } from './topologies'

const ORD = '/api/v1/orders'

export function commerceSuite(topology: () => Topology) {
  let opened: Promise<Shop> | undefined
  const shop = () => (opened ??= openShop(topology().http))

  test('the shop journey: build, browse, search, cart, checkout, fulfil, ship, deliver, return, receive; stock, reservations, payment and ledger agree at every step', async () => {
    const s = await shop()
    const { api, manager } = s
    const word = uniqueWord('lumen')

    // ---- the manager builds the shop: a category tree, products in it, stock in two warehouses
    const lighting = await s.category(`lighting-${word}`, 'Lighting')
    const lamps = await s.category(`lamps-${word}`, 'Lamps', lighting)
    const cables = await s.category(`cables-${word}`, 'Cables')
    const w1 = await s.warehouse()
    const w2 = await s.warehouse()
    const lamp = await s.product({ name: `Desk lamp ${word}`, description: 'brass, warm light', price: 1250, categoryId: lamps, stock: { [w1]: 5 } })
    const floorLamp = await s.product({ name: `Floor lamp ${word}`, price: 4500, categoryId: lamps, stock: { [w1]: 1 } })
    // Four bulbs will be bought and no warehouse has four: they come from two.
    const bulb = await s.product({ name: `Bulb ${word}`, price: 300, categoryId: lighting, stock: { [w1]: 2, [w2]: 3 } })
    const cable = await s.product({ name: `Cable ${word}`, price: 150, categoryId: cables, stock: { [w2]: 10 } })
    expect(await s.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 5, reserved: 0, available: 5 })
    expect((await s.movements(lamp)).map((m) => [m.delta, m.onHandAfter, m.reason])).toEqual([[5, 5, 'opening stock']])

    // ---- the customer browses by category (a category includes those under it) and searches
    const customer = await s.customer()
    expect((await s.search({ category: `lighting-${word}`, sort: 'price_asc' })).skus).toEqual([bulb, lamp, floorLamp])
    expect((await s.search({ category: lamps, sort: 'price_asc' })).skus).toEqual([lamp, floorLamp])
    expect((await s.search({ q: word, maxPrice: 2000, sort: 'price_asc' })).skus).toEqual([cable, bulb, lamp])
    // One product per page: three pages, no repeats, no gaps.
    expect(await s.search({ q: word, maxPrice: 2000, sort: 'price_asc' }, 1)).toEqual({ skus: [cable, bulb, lamp], pages: 3 })
    expect((await s.search({ q: `brass ${word}`, minPrice: 200, maxPrice: 2000 })).skus).toEqual([lamp])
    expect((await s.search({ q: word, category: cables })).skus).toEqual([cable])
    expectError(await api.get(`/api/v1/catalog/products?q=${word}&minPrice=-1`), 422)
    expectError(await api.get(`/api/v1/catalog/products?q=${word}&cursor=not-a-cursor`), 400)

    // ---- the cart: lines priced by the catalog; bad input is refused and changes nothing
    const cartId = await s.cart(customer.token, [
      [lamp, 1],
      [bulb, 4],
      [floorLamp, 1],
    ])
    expectStatus(await api.patch(`${ORD}/carts/${cartId}/items/${lamp}`, { quantity: 2 }, customer.token), 200)
    expectStatus(await api.del(`${ORD}/carts/${cartId}/items/${floorLamp}`, customer.token), 200)
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: lamp, quantity: 1, unitPrice: 1 }, customer.token), 422)
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: lamp, quantity: 0 }, customer.token), 422)
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: `NO-${lamp}`, quantity: 1 }, customer.token), 422, 'UNKNOWN_SKU')
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: lamp, quantity: 1 }), 401)
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: lamp, quantity: 1 }, (await s.customer()).token), 404)
    const cart = await api.get(`${ORD}/carts/${cartId}`, customer.token)
    expectStatus(cart, 200)
    expect(cart.body.items.map((i: any) => [i.sku, i.unitPrice, i.quantity, i.lineTotal])).toEqual([
      [lamp, 1250, 2, 2500],
      [bulb, 300, 4, 1200],
    ])
    expect([cart.body.total, cart.body.currency, cart.body.status]).toEqual([3700, 'EUR', 'open'])
    // A cart holds nothing in inventory.
    expect(await s.reservations({ sku: lamp })).toEqual([])

    // ---- checkout with an Idempotency-Key and tok_ok: 201 paid
    const key = unique('journey')
    const placed = await s.checkout(customer.token, cartId, 'tok_ok', key)
    expectStatus(placed, 201)
    const order = placed.body
    expect([order.status, order.customerId, order.currency]).toEqual(['paid', customer.id, 'EUR'])
    expect(order.totals).toEqual({ subtotal: 3700, total: 3700, refunded: 0 })
    expect(order.payment).toEqual({ id: order.payment.id, status: 'captured', amount: 3700, captured: 3700, refunded: 0 })
    const line = (sku: string) => order.lines.find((l: any) => l.sku === sku)
    expect(line(lamp).allocations).toEqual([{ warehouse: w1, quantity: 2 }])
    expect(line(bulb).allocations.map((a: any) => a.quantity).reduce((n: number, q: number) => n + q, 0)).toBe(4)
    expect(line(bulb).allocations.length).toBe(2)
    // Stock left, nothing stays reserved, every reservation of the checkout committed, the ledger has the sale.
    expect(await s.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 3, reserved: 0, available: 3 })
    expect(await s.stock(bulb)).toEqual({ onHand: 1, reserved: 0, available: 1 })
    expect(await s.stock(floorLamp)).toEqual({ onHand: 1, reserved: 0, available: 1 })
    const held = await s.reservations({ reference: order.checkoutId })
    expect(held.map((r) => `${r.sku} ${r.quantity} ${r.status}`).sort()).toEqual(
      [`${lamp} 2 committed`, ...line(bulb).allocations.map((a: any) => `${bulb} ${a.quantity} committed`)].sort(),
    )
    expect((await s.movements(lamp)).map((m) => [m.delta, m.onHandAfter])).toEqual([
      [-2, 3],
      [5, 5],
    ])
    expect((await s.movements(bulb)).filter((m) => m.delta < 0).reduce((n, m) => n + m.delta, 0)).toBe(-4)
    const payment = await s.payment(order.payment.id)
    expect([payment.status, payment.amount, payment.captured, payment.refunded, payment.reference]).toEqual(['captured', 3700, 3700, 0, order.checkoutId])
    expect(payment.events.map((e) => [e.kind, e.amount])).toEqual([
      ['authorized', 3700],
      ['captured', 3700],
    ])
    // The same request again is the same order; the consumed cart takes no more lines.
    const replayed = await s.checkout(customer.token, cartId, 'tok_ok', key)
    expectStatus(replayed, 201)
    expect(replayed.body.id).toBe(order.id)
    expectError(await api.post(`${ORD}/carts/${cartId}/items`, { sku: lamp, quantity: 1 }, customer.token), 409, 'CART_CHECKED_OUT')

    // ---- the manager fulfils, ships, delivers: statuses move, stock and money do not
    const unchanged = async () => {
      expect(await s.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 3, reserved: 0, available: 3 })
      expect((await s.payment(order.payment.id)).events.map((e) => e.kind)).toEqual(['authorized', 'captured'])
      expect((await s.movements(lamp)).length).toBe(2)
    }
    expectError(await api.post(`${ORD}/orders/${order.id}/ship`, undefined, customer.token), 403)
    expectError(await api.post(`${ORD}/orders/${order.id}/deliver`, undefined, manager.token), 409, 'INVALID_STATUS_TRANSITION')
    for (const [action, status] of [
      ['fulfil', 'fulfilling'],
      ['ship', 'shipped'],
      ['deliver', 'delivered'],
    ]) {
      const moved = await api.post(`${ORD}/orders/${order.id}/${action}`, undefined, manager.token)
      expectStatus(moved, 200)
      expect(moved.body.status).toBe(status)
      await unchanged()
    }
    expectError(await api.post(`${ORD}/orders/${order.id}/cancel`, undefined, customer.token), 409, 'INVALID_STATUS_TRANSITION')
    const delivered = await s.order(order.id, customer.token)
    expect(delivered.history.map((h: any) => h.to)).toEqual(['paid', 'fulfilling', 'shipped', 'delivered'])

    // ---- the customer returns one lamp: asking moves nothing
    expectError(await api.post(`${ORD}/orders/${order.id}/returns`, { lines: [{ sku: lamp, quantity: 3 }], reason: 'too many' }, customer.token), 422, 'RETURN_EXCEEDS_PURCHASE')
    expectError(await api.post(`${ORD}/orders/${order.id}/returns`, { lines: [], reason: 'nothing' }, customer.token), 422)
    const asked = await api.post(`${ORD}/orders/${order.id}/returns`, { lines: [{ sku: lamp, quantity: 1 }], reason: 'too bright' }, customer.token)
    expectStatus(asked, 201)
    expect([asked.body.status, asked.body.amount]).toEqual(['requested', 1250])
    await unchanged()

    // ---- the manager receives it: the lamp is back on hand, 12.50 refunded, one ledger row
    expectError(await api.post(`${ORD}/returns/${asked.body.id}/receive`, undefined, customer.token), 403)
    const received = await api.post(`${ORD}/returns/${asked.body.id}/receive`, undefined, manager.token)
    expectStatus(received, 200)
    expect(received.body.status).toBe('received')
    expect(await s.level(lamp, w1)).toEqual({ sku: lamp, warehouse: w1, onHand: 4, reserved: 0, available: 4 })
    const [back] = await s.movements(lamp)
    expect([back.delta, back.onHandAfter, back.source]).toEqual([1, 4, `restock:return:${asked.body.id}`])
    const refunded = await s.payment(order.payment.id)
    expect([refunded.status, refunded.captured, refunded.refunded]).toEqual(['partially_refunded', 3700, 1250])
    expect(refunded.events.map((e) => [e.kind, e.amount])).toEqual([
      ['authorized', 3700],
      ['captured', 3700],
      ['refunded', 1250],
    ])
    const after = await s.order(order.id, customer.token)
    expect([after.status, after.totals.refunded, after.payment.refunded, line(lamp).quantity]).toEqual(['delivered', 1250, 1250, 2])
    expect(after.lines.find((l: any) => l.sku === lamp).returned).toBe(1)
    expectError(await api.post(`${ORD}/returns/${asked.body.id}/receive`, undefined, manager.token), 409, 'RETURN_ALREADY_RECEIVED')
    expect((await s.payment(order.payment.id)).refunded).toBe(1250)
    // The ledger sums to what is on hand, for every product of the journey.
    for (const sku of [lamp, bulb, floorLamp, cable]) expect((await s.movements(sku)).reduce((n, m) => n + m.delta, 0)).toBe((await s.stock(sku)).onHand)
    expect((await api.get(`${ORD}/orders`, customer.token)).body.items.map((o: any) => o.id)).toEqual([order.id])
  }, 60_000)

  /** A checkout of 2 units (of 5 in stock) with `card`, and what the saga recorded. */
  async function attempt(card: string) {
    const s = await shop()
    const w = await s.warehouse()
    const sku = await s.product({ price: 999, stock: { [w]: 5 } })
    const customer = await s.customer()
    const cartId = await s.cart(customer.token, [[sku, 2]])
    const started = performance.now()
    const answer = await s.checkout(customer.token, cartId, card)
    const ms = performance.now() - started
    const [saga] = await s.checkouts(customer.token, cartId)
    return { s, w, sku, customer, cartId, answer, ms, saga }
  }

  /** Nothing of a failed checkout is left: no order, stock whole and free, no active reservation, no held payment, the cart open. */
  async function expectNothingLeft(f: Awaited<ReturnType<typeof attempt>>) {
    const { s } = f
    expect([f.saga.status, f.saga.orderId]).toEqual(['compensated', null])
    await s.expectWhole(f.saga, 1998)
    expect((await s.api.get(`${ORD}/orders`, f.customer.token)).body.items).toEqual([])
    expect(await s.level(f.sku, f.w)).toEqual({ sku: f.sku, warehouse: f.w, onHand: 5, reserved: 0, available: 5 })
    expect(await s.reservations({ sku: f.sku, status: 'active' })).toEqual([])
    expect((await s.movements(f.sku)).map((m) => m.delta)).toEqual([5])
    expect((await s.api.get(`${ORD}/carts/${f.cartId}`, f.customer.token)).body.status).toBe('open')
  }

  test('a declined card: 402 PAYMENT_DECLINED, no order, no active reservation, no held payment; another card then succeeds', async () => {
    const f = await attempt('tok_declined')
    expectError(f.answer, 402, 'PAYMENT_DECLINED')
    await expectNothingLeft(f)
    expect((await f.s.reservations({ reference: f.saga.id })).map((r) => r.status)).toEqual(['released'])
    expect((await f.s.paymentsOf(f.saga.id)).map((p) => [p.status, p.captured])).toEqual([['declined', 0]])
    const retried = await f.s.checkout(f.customer.token, f.cartId, 'tok_ok')
    expectStatus(retried, 201)
    expect(await f.s.level(f.sku, f.w)).toEqual({ sku: f.sku, warehouse: f.w, onHand: 3, reserved: 0, available: 3 })
  })

  test('a provider error (tok_error): 503, compensated', async () => {
    const f = await attempt('tok_error')
    expectError(f.answer, 503, 'PAYMENT_PROVIDER_UNAVAILABLE')
    await expectNothingLeft(f)
    expect((await f.s.paymentsOf(f.saga.id)).map((p) => p.status)).toEqual(['failed'])
  })

  test('a provider timeout (tok_slow): 503 after the provider timeout, compensated; the late approval holds nothing', async () => {
    // The topologies set PAYMENTS_PROVIDER_TIMEOUT_MS 2000 and PAYMENTS_SANDBOX_SLOW_MS 2500.
    const f = await attempt('tok_slow')
    expectError(f.answer, 503, 'PAYMENT_PROVIDER_UNAVAILABLE')
    await expectNothingLeft(f)
    // It failed at the timeout, not at the slow answer: the provider's approval never became an authorization.
    const [payment] = await f.s.paymentsOf(f.saga.id)
    expect(payment.events.map((e) => e.kind)).toEqual(['failed', 'voided'])
    await Bun.sleep(Math.max(0, 2700 - f.ms))
    await expectNothingLeft(f)
    expect((await f.s.paymentsOf(f.saga.id)).map((p) => [p.status, p.captured])).toEqual([['failed', 0]])
  })

  test('the same checkout request sent twice (a retry, then both at once) makes one order', async () => {
    const s = await shop()
    const w = await s.warehouse()
    const sku = await s.product({ price: 700, stock: { [w]: 5 } })
    const customer = await s.customer()
    const cartId = await s.cart(customer.token, [[sku, 2]])
    const key = unique('twice')
    const first = await s.checkout(customer.token, cartId, 'tok_ok', key)
    const again = await s.checkout(customer.token, cartId, 'tok_ok', key)
    expectStatus(first, 201)
    expectStatus(again, 201)
    expect(again.body.id).toBe(first.body.id)
    // At once: one runs, the other is that same order or told it is in progress, never a second order.
    const other = await s.cart(customer.token, [[sku, 1]])
    const otherKey = unique('twice')
    const both = await Promise.all([s.checkout(customer.token, other, 'tok_ok', otherKey), s.checkout(customer.token, other, 'tok_ok', otherKey)])
    expect(both.some((r) => r.status === 201)).toBe(true)
    for (const r of both) if (r.status !== 201) expectError(r, 409)
    const orders = (await s.api.get(`${ORD}/orders`, customer.token)).body.items
    expect(orders.length).toBe(2)
    expect(await s.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 2, reserved: 0, available: 2 })
    expect((await s.movements(sku)).map((m) => m.delta)).toEqual([-1, -2, 5])
    expect((await s.paymentsOf(first.body.checkoutId)).map((p) => [p.status, p.captured])).toEqual([['captured', 1400]])
    // The same key with another request is refused and changes nothing.
    const third = await s.cart(customer.token, [[sku, 1]])
    expectError(await s.checkout(customer.token, third, 'tok_ok', key), 422, 'IDEMPOTENCY_KEY_REUSED')
    expect(await s.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 2, reserved: 0, available: 2 })
  })

  test('32 customers race for the last 5 units: exactly 5 orders, the rest 409 OUT_OF_STOCK; stock 0, nothing reserved or held', async () => {
    const s = await shop()
    const w = await s.warehouse()
    const sku = await s.product({ price: 2500, stock: { [w]: 5 } })
    const customers = await Promise.all(Array.from({ length: 32 }, () => s.customer()))
    const carts = await Promise.all(customers.map((c) => s.cart(c.token, [[sku, 1]])))
    const answers = await Promise.all(customers.map((c, i) => s.checkout(c.token, carts[i])))
    const outcomes: Record<string, number> = {}
    for (const r of answers) outcomes[`${r.status} ${r.body?.error?.code ?? r.body?.status}`] = (outcomes[`${r.status} ${r.body?.error?.code ?? r.body?.status}`] ?? 0) + 1
    expect(outcomes).toEqual({ '201 paid': 5, '409 OUT_OF_STOCK': 27 })
    for (const r of answers) if (r.status !== 201) expectError(r, 409, 'OUT_OF_STOCK')
    const paid = answers.filter((r) => r.status === 201)
    expect(await s.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 0, reserved: 0, available: 0 })
    expect(await s.reservations({ sku, status: 'active' })).toEqual([])
    expect((await s.reservations({ sku, status: 'committed' })).length).toBe(5)
    const ledger = await s.movements(sku)
    expect(ledger.map((m) => m.delta).sort()).toEqual([-1, -1, -1, -1, -1, 5])
    expect(Math.min(...ledger.map((m) => m.onHandAfter))).toBe(0)
    // Every attempt is settled and whole; only the winners' payments exist, each captured once.
    const sagas: Attempt[] = await Promise.all(customers.map(async (c, i) => (await s.checkouts(c.token, carts[i]))[0]))
    for (const saga of sagas) await s.expectWhole(saga, 2500)
    expect(sagas.filter((c) => c.status === 'completed').map((c) => c.orderId).sort()).toEqual(paid.map((r) => r.body.id).sort())
  }, 60_000)

  test('checkout input is validated at the edge: each bad request is a clear error and reserves nothing', async () => {
    const s = await shop()
    const w = await s.warehouse()
    const sku = await s.product({ stock: { [w]: 3 } })
    const customer = await s.customer()
    const cartId = await s.cart(customer.token, [[sku, 1]])
    const url = `${ORD}/carts/${cartId}/checkout`
    const payment = { method: 'card', token: 'tok_ok' }
    const address = { name: 'Ada Buyer', line1: '1 Analytical Way', city: 'London', postalCode: 'N1 9GU', country: 'GB' }
    for (const body of [
      {},
      { payment },
      { payment: { method: 'cash', token: 'tok_ok' }, shippingAddress: address },
      { payment, shippingAddress: { ...address, country: 'Britain' } },
      { payment, shippingAddress: address, total: 1 },
    ])
      expectError(await s.api.post(url, body, customer.token), 422)
    expectError(await client(topology().http).post(url, '{"payment":', customer.token), 400)
    expectError(await s.api.post(url, { payment, shippingAddress: address }), 401)
    expectError(await s.api.post(url, { payment, shippingAddress: address }, customer.token, { 'idempotency-key': 'bad key with spaces' }), 422)
    expectError(await s.checkout((await s.customer()).token, cartId), 404, 'CART_NOT_FOUND')
    expect(await s.checkouts(customer.token, cartId)).toEqual([])
    expect(await s.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 3, reserved: 0, available: 3 })
    expect(await s.reservations({ sku })).toEqual([])
  })
}
