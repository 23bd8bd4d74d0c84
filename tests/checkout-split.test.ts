/**
 * Orders with payments in another process (split topology, static routes): calls go over HTTP,
 * and when the payments process dies a checkout answers 503 with nothing left reserved, and a
 * cancellation is accepted at once and refunded by the recovery sweep once payments is back.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { freePort } from '../scripts/free-port'
import { baseEnv, type ChildServer, eventually, expectError, expectStatus, isolatedStore, spawnServer, variant } from './harness'
import { openShop, type Shop } from './shop'

const store = isolatedStore()
let paymentsEnv: Record<string, string>
let payments: ChildServer
let shopServer: ChildServer
let shop: Shop

beforeAll(async () => {
  const paymentsPort = await freePort()
  paymentsEnv = baseEnv({ ...store.env, PORT: String(paymentsPort), PLUGINS: 'payments' })
  payments = await spawnServer(paymentsEnv)
  shopServer = await spawnServer(
    baseEnv({
      ...store.env,
      MQTT_PORT: String(await freePort()),
      PLUGINS: 'auth,catalog,inventory,orders',
      PLUGIN_ROUTES: `payments=http://127.0.0.1:${paymentsPort}`,
      CALL_BREAKER_HALF_OPEN_MS: '200',
      ORDERS_SWEEP_MS: '250',
      ORDERS_CALL_TIMEOUT_MS: '3000',
      RATE_LIMIT_IP_PER_MIN: '100000',
    }),
  )
  shop = await openShop(shopServer.url, payments.url)
}, 60_000)

afterAll(async () => {
  for (const child of [payments, shopServer]) {
    child?.proc.kill('SIGTERM')
    await child?.proc.exited
  }
  await store.cleanup()
})

describe(`orders with payments in another process (${variant})`, () => {
  test('checkout over remote calls; with payments down: 503, nothing reserved; a cancellation is refunded once payments is back', async () => {
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 800, stock: { [w]: 10 } })
    const customer = await shop.customer()
    const placed = await shop.checkout(customer.token, await shop.cart(customer.token, [[sku, 2]]))
    expectStatus(placed, 201)
    expect(placed.body.payment.status).toBe('captured')
    expect((await shop.payment(placed.body.payment.id)).captured).toBe(1600)

    payments.proc.kill('SIGKILL')
    await payments.proc.exited

    // A checkout cannot authorize: 503, and the stock it reserved is free again.
    const cartId = await shop.cart(customer.token, [[sku, 3]])
    const refused = await shop.checkout(customer.token, cartId)
    expectError(refused, 503)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 8, reserved: 0, available: 8 })
    const [attempt] = await shop.checkouts(customer.token, cartId)
    expect(attempt.orderId).toBeNull()
    expect((await shop.reservations({ reference: attempt.id })).map((r) => r.status)).toEqual(['released'])

    // The order is still readable (without its payment summary) and can be cancelled: goods back at once.
    const shown = await shop.order(placed.body.id, customer.token)
    expect(shown.payment).toBeNull()
    const cancelled = await shop.api.post(`/api/v1/orders/orders/${placed.body.id}/cancel`, undefined, customer.token)
    expectStatus(cancelled, 200)
    expect(cancelled.body.status).toBe('cancelled')
    expect(cancelled.body.totals.refunded).toBe(0)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 10, reserved: 0, available: 10 })

    payments = await spawnServer(paymentsEnv)
    const refunded = await eventually(async () => {
      const order = await shop.order(placed.body.id, customer.token)
      return order.totals.refunded === 1600 ? order : undefined
    }, 15_000)
    expect(refunded?.payment?.status).toBe('refunded')
    const payment = await shop.payment(placed.body.payment.id)
    expect(payment.events.map((e) => e.kind)).toEqual(['authorized', 'captured', 'refunded'])
    // The interrupted checkout is settled too: its key spent, its cart open again.
    const settled = await eventually(async () => {
      const [c] = await shop.checkouts(customer.token, cartId)
      return c.status === 'compensated' ? c : undefined
    }, 15_000)
    expect(settled?.paymentId).not.toBeNull()
    expect((await shop.payment(settled!.paymentId!)).status).toBe('voided')
    expect((await shop.api.get(`/api/v1/orders/carts/${cartId}`, customer.token)).body.status).toBe('open')
    expectStatus(await shop.checkout(customer.token, cartId), 201)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 7, reserved: 0, available: 7 })
  }, 90_000)
})
