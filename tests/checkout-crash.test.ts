/**
 * A checkout saga survives its process: the server is killed with SIGKILL while a saga is held
 * mid-way, restarted on the same database, and its recovery sweep settles the saga: compensated
 * when the order did not exist yet (nothing reserved, nothing held), completed when it did (stock
 * committed, payment captured). Never half-done.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { freePort } from '../scripts/free-port'
import { baseEnv, type ChildServer, eventually, expectStatus, isolatedStore, spawnServer, variant } from './harness'
import { openShop, type Shop, unique } from './shop'

const stores: ReturnType<typeof isolatedStore>[] = []
const children: ChildServer[] = []
afterAll(async () => {
  for (const child of children) {
    child.proc.kill('SIGTERM')
    await child.proc.exited
  }
  for (const store of stores) await store.cleanup()
})

async function environment(extra: Record<string, string>) {
  const store = isolatedStore()
  stores.push(store)
  return baseEnv({
    ...store.env,
    PORT: String(await freePort()),
    MQTT_PORT: String(await freePort()),
    ORDERS_SWEEP_MS: '250',
    PAYMENTS_SWEEP_MS: '250',
    ...extra,
  })
}

async function spawn(env: Record<string, string>) {
  const child = await spawnServer(env)
  children.push(child)
  return child
}

async function kill(child: ChildServer) {
  child.proc.kill('SIGKILL')
  await child.proc.exited
}

/**
 * Another sign-in of the customer. With Redis the edge still remembers the killed request's key as
 * in progress (409 IDEMPOTENCY_IN_PROGRESS for its session, up to 2 minutes); the orders plugin's
 * own record of the key is what answers a retry, and another session reaches it at once.
 */
async function freshSession(shop: Shop, customer: { email: string; password: string }) {
  const login = await shop.api.post('/api/v1/auth/login', { email: customer.email, password: customer.password })
  expectStatus(login, 200)
  return login.body.accessToken as string
}

describe(`checkout crash recovery (${variant})`, () => {
  test('killed while the card is being authorized: on restart the saga is compensated', async () => {
    // The provider answers tok_slow after 10 s, so the saga sits in its authorize step when the process dies.
    const env = await environment({ PAYMENTS_PROVIDER_TIMEOUT_MS: '3000', PAYMENTS_SANDBOX_SLOW_MS: '10000', ORDERS_CHECKOUT_LEASE_MS: '5000' })
    let server = await spawn(env)
    let shop = await openShop(server.url)
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 2000, stock: { [w]: 4 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 3]])
    const key = unique('key')
    void shop.checkout(customer.token, cartId, 'tok_slow', key).catch(() => undefined)
    const inFlight = await eventually(async () => (await shop.checkouts(customer.token, cartId)).find((c) => c.step === 'authorize'))
    expect(inFlight?.status).toBe('running')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 4, reserved: 3, available: 1 })
    await kill(server)

    server = await spawn(env)
    shop = await openShop(server.url)
    const settled = await eventually(async () => {
      const [c] = await shop.checkouts(customer.token, cartId)
      return c.status === 'compensated' ? c : undefined
    }, 20_000)
    expect(settled?.orderId).toBeNull()
    expect(settled?.error?.code).toBe('CHECKOUT_INTERRUPTED')
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 4, reserved: 0, available: 4 })
    expect((await shop.reservations({ reference: inFlight!.id })).map((r) => r.status)).toEqual(['released'])
    const payments = await eventually(async () => {
      const all = await shop.paymentsOf(inFlight!.id)
      return all.every((p) => p.status !== 'pending') ? all : undefined
    }, 10_000)
    for (const p of payments ?? []) expect(['failed', 'voided', 'declined']).toContain(p.status)
    expect((await shop.api.get('/api/v1/orders/orders', customer.token)).body.items).toEqual([])
    // The cart can be checked out again, and the original key answers with the recorded outcome.
    expect((await shop.api.get(`/api/v1/orders/carts/${cartId}`, customer.token)).body.status).toBe('open')
    const retried = await shop.checkout(await freshSession(shop, customer), cartId, 'tok_slow', key)
    expect(retried.status).toBe(503)
    expect(retried.body.error.code).toBe('CHECKOUT_INTERRUPTED')
  }, 60_000)

  test('killed after the order was placed, before stock and payment were settled: on restart the saga completes', async () => {
    const env = await environment({ ORDERS_CHECKOUT_LEASE_MS: '2000' })
    let server = await spawn({ ...env, ORDERS_TEST_PAUSE_BEFORE: 'complete', ORDERS_TEST_PAUSE_MS: '60000' })
    let shop = await openShop(server.url)
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 1500, stock: { [w]: 5 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 2]])
    const key = unique('key')
    void shop.checkout(customer.token, cartId, 'tok_ok', key).catch(() => undefined)
    const placed = await eventually(async () => (await shop.api.get('/api/v1/orders/orders', customer.token)).body.items[0])
    expect(placed?.status).toBe('paid')
    const [atComplete] = await shop.checkouts(customer.token, cartId)
    expect([atComplete.status, atComplete.step]).toEqual(['running', 'complete'])
    // Mid-way: the stock is still reserved and the money only authorized.
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 5, reserved: 2, available: 3 })
    expect((await shop.payment(atComplete.paymentId!)).status).toBe('authorized')
    await kill(server)

    server = await spawn(env)
    shop = await openShop(server.url)
    const done = await eventually(async () => {
      const [c] = await shop.checkouts(customer.token, cartId)
      return c.status === 'completed' ? c : undefined
    }, 20_000)
    expect(done?.orderId).toBe(placed.id)
    expect(await shop.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 3, reserved: 0, available: 3 })
    expect((await shop.reservations({ reference: done!.id })).map((r) => r.status)).toEqual(['committed'])
    const payment = await shop.payment(done!.paymentId!)
    expect([payment.status, payment.captured]).toEqual(['captured', 3000])
    expect(payment.events.map((e) => e.kind)).toEqual(['authorized', 'captured'])
    expect((await shop.movements(sku)).map((m) => m.delta)).toEqual([-2, 5])
    // The original request's key now answers with the order, and there is only one.
    const again = await shop.checkout(await freshSession(shop, customer), cartId, 'tok_ok', key)
    expectStatus(again, 201)
    expect(again.body.id).toBe(placed.id)
    expect(again.body.payment.status).toBe('captured')
    expect((await shop.api.get('/api/v1/orders/orders', customer.token)).body.items.length).toBe(1)
  }, 60_000)

  test('two replicas on one database: when one dies mid-saga, the other finishes it (and only it)', async () => {
    const env = await environment({ ORDERS_CHECKOUT_LEASE_MS: '2000' })
    const dying = await spawn({ ...env, ORDERS_TEST_PAUSE_BEFORE: 'complete', ORDERS_TEST_PAUSE_MS: '60000' })
    const survivor = await spawn({ ...env, PORT: String(await freePort()), MQTT_PORT: String(await freePort()) })
    const shop = await openShop(dying.url)
    const w = await shop.warehouse()
    const sku = await shop.product({ price: 999, stock: { [w]: 3 } })
    const customer = await shop.customer()
    const cartId = await shop.cart(customer.token, [[sku, 1]])
    void shop.checkout(customer.token, cartId).catch(() => undefined)
    expect(await eventually(async () => (await shop.api.get('/api/v1/orders/orders', customer.token)).body.items[0])).toBeTruthy()
    await kill(dying)

    const other = await openShop(survivor.url)
    const done = await eventually(async () => {
      const [c] = await other.checkouts(customer.token, cartId)
      return c.status === 'completed' ? c : undefined
    }, 20_000)
    expect(done).toBeTruthy()
    expect(await other.level(sku, w)).toEqual({ sku, warehouse: w, onHand: 2, reserved: 0, available: 2 })
    const payment = await other.payment(done!.paymentId!)
    expect(payment.events.map((e) => e.kind)).toEqual(['authorized', 'captured'])
    expect((await other.movements(sku)).map((m) => m.delta)).toEqual([-1, 3])
  }, 60_000)
})
