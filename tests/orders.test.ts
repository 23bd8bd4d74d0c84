/**
 * The orders plugin from the outside: carts priced from the catalog, the order status machine and
 * its guards, cancellations (restock + full refund) and returns, who may see and do what, lists,
 * and bad input. Real HTTP against a server running every plugin; embedded defaults and, with
 * TEST_DATABASE_URL / TEST_REDIS_URL, PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { expectError, expectStatus, startServer, type TestServer, variant } from './harness'
import { openShop, type Shop } from './shop'

const ORD = '/api/v1/orders'

let server: TestServer
let shop: Shop

beforeAll(async () => {
  server = await startServer({ RATE_LIMIT_IP_PER_MIN: '100000' })
  shop = await openShop(server.url)
})
afterAll(async () => {
  await server?.stop()
})

/** A paid order of `quantity` units of a fresh product stocked with `stock` in one warehouse. */
async function paidOrder(options: { price?: number; quantity?: number; stock?: number } = {}) {
  const w = await shop.warehouse()
  const sku = await shop.product({ price: options.price ?? 1000, stock: { [w]: options.stock ?? 10 } })
  const customer = await shop.customer()
  const cartId = await shop.cart(customer.token, [[sku, options.quantity ?? 3]])
  const r = await shop.checkout(customer.token, cartId)
  expectStatus(r, 201)
  return { order: r.body, sku, w, customer, cartId }
}

const act = (orderId: string, action: string, token = shop.manager.token, body?: unknown) => shop.api.post(`${ORD}/orders/${orderId}/${action}`, body, token)

describe(`carts (${variant})`, () => {
  test('lines add up, change and go; prices come from the catalog at the time of asking', async () => {
    const w = await shop.warehouse()
    const a = await shop.product({ price: 250, stock: { [w]: 10 } })
    const b = await shop.product({ price: 1000, stock: { [w]: 10 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token)
    const empty = await shop.api.get(`${ORD}/carts/${cartId}`, customer.token)
    expect([empty.body.status, empty.body.items, empty.body.total, empty.body.currency]).toEqual(['open', [], 0, null])

    expectStatus(await shop.api.post(`${ORD}/carts/${cartId}/items`, { sku: a, quantity: 2 }, customer.token), 201)
    const added = await shop.api.post(`${ORD}/carts/${cartId}/items`, { sku: a, quantity: 1 }, customer.token)
    expect(added.body.items.map((i: any) => [i.sku, i.quantity, i.lineTotal])).toEqual([[a, 3, 750]])
    expectStatus(await shop.api.post(`${ORD}/carts/${cartId}/items`, { sku: b, quantity: 1 }, customer.token), 201)
    const patched = await shop.api.patch(`${ORD}/carts/${cartId}/items/${a}`, { quantity: 5 }, customer.token)
    expectStatus(patched, 200)
    expect([patched.body.itemCount, patched.body.subtotal, patched.body.total]).toEqual([6, 5 * 250 + 1000, 5 * 250 + 1000])

    expectStatus(await shop.api.patch(`/api/v1/catalog/products/${a}`, { price: 300 }, shop.manager.token), 200)
    const repriced = await shop.api.get(`${ORD}/carts/${cartId}`, customer.token)
    expect(repriced.body.items.find((i: any) => i.sku === a).unitPrice).toBe(300)
    expect(repriced.body.total).toBe(5 * 300 + 1000)

    const removed = await shop.api.del(`${ORD}/carts/${cartId}/items/${b}`, customer.token)
    expectStatus(removed, 200)
    expect(removed.body.items.map((i: any) => i.sku)).toEqual([a])
    expectError(await shop.api.del(`${ORD}/carts/${cartId}/items/${b}`, customer.token), 404, 'CART_ITEM_NOT_FOUND')
    expectError(await shop.api.patch(`${ORD}/carts/${cartId}/items/${b}`, { quantity: 1 }, customer.token), 404, 'CART_ITEM_NOT_FOUND')
    // A cart holds nothing in the warehouse.
    expect(await shop.level(a, w)).toEqual({ sku: a, warehouse: w, onHand: 10, reserved: 0, available: 10 })
  })

  test('only what the catalog sells, in one currency', async () => {
    const eur = await shop.product({ currency: 'EUR' })
    const usd = await shop.product({ currency: 'USD' })
    const off = await shop.product()
    expectStatus(await shop.api.post(`/api/v1/catalog/products/${off}/deactivate`, undefined, shop.manager.token), 200)
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[eur, 1]])
    const add = (sku: string, quantity = 1) => shop.api.post(`${ORD}/carts/${cartId}/items`, { sku, quantity }, customer.token)
    expectError(await add('NO-SUCH-SKU'), 422, 'UNKNOWN_SKU')
    expectError(await add(off), 422, 'PRODUCT_INACTIVE')
    expectError(await add(usd), 422, 'MIXED_CURRENCIES')
    expectError(await add(eur, 1000), 422, 'QUANTITY_TOO_LARGE')
    const cart = await shop.api.get(`${ORD}/carts/${cartId}`, customer.token)
    expect(cart.body.items.map((i: any) => [i.sku, i.quantity])).toEqual([[eur, 1]])
  })

  test('a cart is its customer’s: anyone else gets 404, nobody signed out gets in', async () => {
    const sku = await shop.product()
    const owner = await shop.customer()
    const other = await shop.customer()
    const cartId = await shop.cart(owner.token, [[sku, 1]])
    expectError(await shop.api.get(`${ORD}/carts/${cartId}`, other.token), 404, 'CART_NOT_FOUND')
    expectError(await shop.api.post(`${ORD}/carts/${cartId}/items`, { sku, quantity: 1 }, other.token), 404, 'CART_NOT_FOUND')
    expectError(await shop.api.patch(`${ORD}/carts/${cartId}/items/${sku}`, { quantity: 3 }, other.token), 404, 'CART_NOT_FOUND')
    expectError(await shop.api.del(`${ORD}/carts/${cartId}/items/${sku}`, other.token), 404, 'CART_NOT_FOUND')
    expectError(await shop.api.get(`${ORD}/carts/${cartId}`, shop.manager.token), 404, 'CART_NOT_FOUND')
    expectError(await shop.api.get(`${ORD}/carts/${cartId}`), 401)
    expectError(await shop.api.post(`${ORD}/carts`), 401)
    expect((await shop.api.get(`${ORD}/carts/${cartId}`, owner.token)).body.items[0].quantity).toBe(1)
  })

  test('bad input is refused with the envelope and changes nothing', async () => {
    const sku = await shop.product()
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    for (const body of [{}, { sku }, { quantity: 1 }, { sku, quantity: 0 }, { sku, quantity: -1 }, { sku, quantity: 1.5 }, { sku, quantity: 'two' }, { sku: '', quantity: 1 }, { sku: ' x', quantity: 1 }, { sku, quantity: 1, price: 1 }])
      expectError(await shop.api.post(`${ORD}/carts/${cartId}/items`, body, customer.token), 422)
    for (const body of [{}, { quantity: 0 }, { quantity: 1001 }, { quantity: 2, sku }])
      expectError(await shop.api.patch(`${ORD}/carts/${cartId}/items/${sku}`, body, customer.token), 422)
    expectError(await shop.api.post(`${ORD}/carts/${cartId}/items`, '{"sku":', customer.token), 400)
    expectError(await shop.api.post(`${ORD}/carts/${cartId}/items`, 'sku=x', customer.token, { 'content-type': 'text/plain' }), 415)
    expectError(await shop.api.get(`${ORD}/carts/${'x'.repeat(65)}`, customer.token), 422)
    const cart = await shop.api.get(`${ORD}/carts/${cartId}`, customer.token)
    expect(cart.body.items.map((i: any) => [i.sku, i.quantity])).toEqual([[sku, 1]])
  })
})

describe(`the order status machine (${variant})`, () => {
  test('paid → fulfilling → shipped → delivered, each step recorded', async () => {
    const { order } = await paidOrder()
    for (const [action, status] of [
      ['fulfil', 'fulfilling'],
      ['ship', 'shipped'],
      ['deliver', 'delivered'],
    ]) {
      const r = await act(order.id, action)
      expectStatus(r, 200)
      expect(r.body.status).toBe(status)
    }
    const now = await shop.order(order.id)
    expect(now.history.map((h: any) => `${h.from}→${h.to}`)).toEqual(['null→paid', 'paid→fulfilling', 'fulfilling→shipped', 'shipped→delivered'])
  })

  test('an illegal transition is 409 naming the current status, and changes nothing', async () => {
    const { order, customer } = await paidOrder()
    const refused = await act(order.id, 'deliver')
    expectError(refused, 409, 'INVALID_STATUS_TRANSITION')
    expect(refused.body.error.message).toContain('is paid')
    expect(refused.body.error.details).toEqual([{ path: '/status', message: 'paid' }])
    expectStatus(await act(order.id, 'ship'), 200)
    const fulfil = await act(order.id, 'fulfil')
    expectError(fulfil, 409, 'INVALID_STATUS_TRANSITION')
    expect(fulfil.body.error.message).toContain('is shipped')
    const cancel = await act(order.id, 'cancel', customer.token)
    expectError(cancel, 409, 'INVALID_STATUS_TRANSITION')
    expect(cancel.body.error.message).toContain('is shipped')
    const early = await shop.api.post(`${ORD}/orders/${order.id}/returns`, { lines: [{ sku: order.lines[0].sku, quantity: 1 }], reason: 'x' }, customer.token)
    expectError(early, 409, 'INVALID_STATUS_TRANSITION')
    expect(early.body.error.message).toContain('is shipped')
    expectStatus(await act(order.id, 'deliver'), 200)
    expectError(await act(order.id, 'ship'), 409, 'INVALID_STATUS_TRANSITION')
    expect((await shop.order(order.id)).status).toBe('delivered')
  })

  test('two managers racing: one transition wins, the other is 409', async () => {
    const { order, customer } = await paidOrder()
    const [shipped, cancelled] = await Promise.all([act(order.id, 'ship'), act(order.id, 'cancel', customer.token)])
    expect([shipped.status, cancelled.status].sort()).toEqual([200, 409])
    const now = await shop.order(order.id)
    expect(now.history.length).toBe(2)
  })

  test('shipping and delivering are for managers; customers get 403', async () => {
    const { order, customer } = await paidOrder()
    for (const action of ['fulfil', 'ship', 'deliver']) expectError(await act(order.id, action, customer.token), 403)
    expectError(await shop.api.post(`${ORD}/returns/whatever/receive`, undefined, customer.token), 403)
    expect((await shop.order(order.id)).status).toBe('paid')
  })
})

describe(`cancellations (${variant})`, () => {
  test('the customer cancels before shipping: the goods go back on hand and everything is refunded', async () => {
    const { order, sku, w, customer } = await paidOrder({ price: 700, quantity: 3, stock: 10 })
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 7, reserved: 0, available: 7 })
    const r = await act(order.id, 'cancel', customer.token)
    expectStatus(r, 200)
    expect(r.body.status).toBe('cancelled')
    expect(r.body.history.at(-1).note).toBe('cancelled by the customer')
    expect(r.body.totals.refunded).toBe(2100)
    expect(r.body.payment.status).toBe('refunded')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 10, reserved: 0, available: 10 })
    const [move] = await shop.movements(sku)
    expect([move.delta, move.source]).toEqual([3, `restock:cancel:${order.id}`])
    const payment = await shop.payment(order.payment.id)
    expect([payment.captured, payment.refunded]).toEqual([2100, 2100])
    expect(payment.events.map((e) => e.kind)).toEqual(['authorized', 'captured', 'refunded'])
    // Again: 409 naming the status, and nothing moves twice.
    const again = await act(order.id, 'cancel', customer.token)
    expectError(again, 409, 'INVALID_STATUS_TRANSITION')
    expect(again.body.error.message).toContain('is cancelled')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 10, reserved: 0, available: 10 })
    expect((await shop.payment(order.payment.id)).refunded).toBe(2100)
  })

  test('a manager cancels a fulfilling order; another customer cannot see it to cancel it', async () => {
    const { order } = await paidOrder()
    const stranger = await shop.customer()
    expectError(await act(order.id, 'cancel', stranger.token), 404, 'ORDER_NOT_FOUND')
    expectStatus(await act(order.id, 'fulfil'), 200)
    const r = await act(order.id, 'cancel')
    expectStatus(r, 200)
    expect(r.body.status).toBe('cancelled')
    expect(r.body.history.map((h: any) => h.to)).toEqual(['paid', 'fulfilling', 'cancelled'])
  })
})

describe(`returns (${variant})`, () => {
  async function delivered(quantity = 3) {
    const placed = await paidOrder({ quantity, price: 400 })
    expectStatus(await act(placed.order.id, 'ship'), 200)
    expectStatus(await act(placed.order.id, 'deliver'), 200)
    return placed
  }
  const ask = (orderId: string, token: string, lines: unknown, reason: unknown = 'broken') =>
    shop.api.post(`${ORD}/orders/${orderId}/returns`, { lines, reason }, token)

  test('never more than bought minus already returned, even when asked at the same time', async () => {
    const { order, sku, customer } = await delivered(3)
    const both = await Promise.all([ask(order.id, customer.token, [{ sku, quantity: 2 }]), ask(order.id, customer.token, [{ sku, quantity: 2 }])])
    expect(both.map((r) => r.status).sort()).toEqual([201, 422])
    expectError(both.find((r) => r.status === 422)!, 422, 'RETURN_EXCEEDS_PURCHASE')
    expectStatus(await ask(order.id, customer.token, [{ sku, quantity: 1 }]), 201)
    expectError(await ask(order.id, customer.token, [{ sku, quantity: 1 }]), 422, 'RETURN_EXCEEDS_PURCHASE')
    expect((await shop.order(order.id)).lines[0].returned).toBe(3)
  })

  test('returns are the customer’s, of lines the order has, each SKU once', async () => {
    const { order, sku, customer } = await delivered(2)
    const stranger = await shop.customer()
    expectError(await ask(order.id, stranger.token, [{ sku, quantity: 1 }]), 404, 'ORDER_NOT_FOUND')
    expectError(await ask(order.id, shop.manager.token, [{ sku, quantity: 1 }]), 403)
    expectError(await ask(order.id, customer.token, [{ sku: 'OTHER', quantity: 1 }]), 422, 'UNKNOWN_LINE')
    expectError(await ask(order.id, customer.token, [{ sku, quantity: 1 }, { sku, quantity: 1 }]), 422, 'DUPLICATE_LINE')
    for (const [lines, reason] of [
      [[], 'x'],
      [[{ sku, quantity: 0 }], 'x'],
      [[{ sku }], 'x'],
      [[{ sku, quantity: 1 }], ''],
      [[{ sku, quantity: 1 }], '   '],
      [[{ sku, quantity: 1, price: 5 }], 'x'],
    ])
      expectError(await ask(order.id, customer.token, lines, reason), 422)
    expectError(await shop.api.post(`${ORD}/returns/nope/receive`, undefined, shop.manager.token), 404, 'RETURN_NOT_FOUND')
    expect((await shop.order(order.id)).lines[0].returned).toBe(0)
  })
})

describe(`reading orders (${variant})`, () => {
  test('customers list their own, managers everyone’s, newest first with a cursor', async () => {
    const first = await paidOrder()
    const customer = first.customer
    const cartId = await shop.cart(customer.token, [[first.sku, 1]])
    const second = await shop.checkout(customer.token, cartId)
    expectStatus(second, 201)
    const other = await paidOrder()

    const mine = await shop.api.get(`${ORD}/orders?limit=1`, customer.token)
    expectStatus(mine, 200)
    expect(mine.body.items.map((o: any) => o.id)).toEqual([second.body.id])
    const next = await shop.api.get(`${ORD}/orders?limit=1&cursor=${mine.body.nextCursor}`, customer.token)
    expect(next.body.items.map((o: any) => o.id)).toEqual([first.order.id])
    expect(next.body.nextCursor).toBeNull()
    expect(next.body.items[0]).toEqual({
      id: first.order.id,
      customerId: customer.id,
      status: 'paid',
      total: first.order.totals.total,
      currency: 'EUR',
      refunded: 0,
      createdAt: first.order.createdAt,
      updatedAt: next.body.items[0].updatedAt,
    })

    const all = await shop.api.get(`${ORD}/orders?limit=200`, shop.manager.token)
    const ids = all.body.items.map((o: any) => o.id)
    expect(ids).toContain(other.order.id)
    expect(ids).toContain(first.order.id)
    const theirs = await shop.api.get(`${ORD}/orders?customerId=${other.customer.id}`, shop.manager.token)
    expect(theirs.body.items.map((o: any) => o.id)).toEqual([other.order.id])
    // A customer's customerId filter cannot widen what they see.
    const sneaky = await shop.api.get(`${ORD}/orders?customerId=${other.customer.id}`, customer.token)
    expect(sneaky.body.items.map((o: any) => o.id)).toEqual([second.body.id, first.order.id])
  })

  test('another customer’s order is 404; managers see it', async () => {
    const { order } = await paidOrder()
    const stranger = await shop.customer()
    expectError(await shop.api.get(`${ORD}/orders/${order.id}`, stranger.token), 404, 'ORDER_NOT_FOUND')
    expectError(await shop.api.get(`${ORD}/orders/nope`, shop.manager.token), 404, 'ORDER_NOT_FOUND')
    expectError(await shop.api.get(`${ORD}/orders/${order.id}`), 401)
    expect((await shop.order(order.id)).id).toBe(order.id)
  })

  test('bad list queries are 422', async () => {
    const customer = await shop.customer()
    expectError(await shop.api.get(`${ORD}/orders?status=lost`, customer.token), 422)
    expectError(await shop.api.get(`${ORD}/orders?limit=201`, customer.token), 422)
    expectError(await shop.api.get(`${ORD}/orders?cursor=!!`, customer.token), 400, 'INVALID_CURSOR')
    expectError(await shop.api.get(`${ORD}/checkouts?status=lost`, customer.token), 422)
  })
})
