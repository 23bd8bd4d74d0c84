/**
 * The payments plugin from the outside: money moves through its actions (driven here with real
 * ctx.call through the `storefront` fixture), and managers look payments up over HTTP. The sandbox
 * provider's tokens exercise approvals, declines, provider errors, timeouts and the circuit breaker.
 * Runs on embedded defaults and, with TEST_DATABASE_URL / TEST_REDIS_URL, on PostgreSQL + Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { adminToken, client, eventually, expectError, expectStatus, startServer, type TestServer, userWithRole, variant } from './harness'

const PAY = '/api/v1/payments'

let server: TestServer
let api: ReturnType<typeof client>
let manager: { token: string }
let customer: { token: string }

beforeAll(async () => {
  server = await startServer({ PAYMENTS_PROVIDER_TIMEOUT_MS: '300', PAYMENTS_SANDBOX_SLOW_MS: '1500', PAYMENTS_BREAKER_FAILURES: '100', PAYMENTS_SWEEP_MS: '200' })
  api = client(server.url)
  const admin = await adminToken(server.url)
  manager = await userWithRole(server.url, 'manager', admin)
  customer = await userWithRole(server.url, 'customer', admin)
})
afterAll(async () => {
  await server?.stop()
})

let seq = 0
const unique = (tag: string) => `${tag}-${Date.now().toString(36)}-${seq++}`

/** What ctx.call('payments.…') answered: the result, or the error's status and code. */
async function action(url: string, name: string, input: Record<string, unknown>) {
  const r = await client(url).post('/api/v1/storefront/call', { action: name, input, timeoutMs: 10_000 })
  expectStatus(r, 200)
  return r.body as { ok: boolean; result?: any; status?: number; code?: string; message?: string; ms: number }
}

const authorize = (token: string, extra: Record<string, unknown> = {}, url = server.url) =>
  action(url, 'payments.authorize', { amount: 2500, currency: 'EUR', method: 'card', token, reference: unique('checkout'), key: unique('auth'), ...extra })

async function authorized(amount = 2500) {
  const r = await authorize('tok_ok', { amount })
  expect(r.ok).toBe(true)
  return r.result as { id: string; status: string; amount: number }
}

const getPayment = async (id: string) => {
  const r = await api.get(`${PAY}/payments/${id}`, manager.token)
  expectStatus(r, 200)
  return r.body as { id: string; status: string; amount: number; captured: number; refunded: number; events: { kind: string; amount: number; detail: string | null }[] }
}
const kinds = (p: { events: { kind: string }[] }) => p.events.map((e) => e.kind)

describe(`payments through the sandbox provider (${variant})`, () => {
  test('tok_ok authorizes; the payment and its history are visible to managers', async () => {
    const reference = unique('checkout')
    const r = await authorize('tok_ok', { reference, amount: 1999, currency: 'USD' })
    expect(r.ok).toBe(true)
    expect(r.result.status).toBe('authorized')
    expect(r.result.provider).toBe('sandbox')
    expect(r.result.amount).toBe(1999)
    expect(r.result.currency).toBe('USD')
    expect(r.result.reference).toBe(reference)

    const p = await getPayment(r.result.id)
    expect(p.status).toBe('authorized')
    expect(kinds(p)).toEqual(['authorized'])
    const listed = await api.get(`${PAY}/payments?reference=${reference}`, manager.token)
    expectStatus(listed, 200)
    expect(listed.body.items.map((x: any) => x.id)).toEqual([r.result.id])
  })

  test('the same key authorizes once; the same key for another amount is refused', async () => {
    const input = { amount: 700, currency: 'EUR', method: 'card', token: 'tok_ok', reference: unique('checkout'), key: unique('auth') }
    const first = await action(server.url, 'payments.authorize', input)
    const again = await action(server.url, 'payments.authorize', input)
    expect(first.ok && again.ok).toBe(true)
    expect(again.result.id).toBe(first.result.id)
    expect(kinds(await getPayment(first.result.id))).toEqual(['authorized'])
    const reused = await action(server.url, 'payments.authorize', { ...input, amount: 701 })
    expect(reused.status).toBe(422)
    expect(reused.code).toBe('IDEMPOTENCY_KEY_REUSED')
  })

  test('tok_declined is 402 PAYMENT_DECLINED, and again with the same key', async () => {
    const key = unique('auth')
    const reference = unique('checkout')
    for (let i = 0; i < 2; i++) {
      const r = await authorize('tok_declined', { key, reference })
      expect(r.ok).toBe(false)
      expect(r.status).toBe(402)
      expect(r.code).toBe('PAYMENT_DECLINED')
    }
    const listed = (await api.get(`${PAY}/payments?reference=${reference}`, manager.token)).body.items
    expect(listed.length).toBe(1)
    expect(listed[0].status).toBe('declined')
    expect(kinds(listed[0])).toEqual(['declined'])
  })

  test('tok_error is 503 PAYMENT_PROVIDER_UNAVAILABLE and the authorization is voided by key', async () => {
    const reference = unique('checkout')
    const r = await authorize('tok_error', { reference })
    expect(r.status).toBe(503)
    expect(r.code).toBe('PAYMENT_PROVIDER_UNAVAILABLE')
    const listed = (await api.get(`${PAY}/payments?reference=${reference}`, manager.token)).body.items
    expect(listed[0].status).toBe('failed')
    expect(kinds(listed[0])).toEqual(['failed', 'voided'])
  })

  test('tok_slow times out (PAYMENTS_PROVIDER_TIMEOUT_MS) with 503, voided so the late approval holds nothing', async () => {
    const reference = unique('checkout')
    const key = unique('auth')
    const r = await authorize('tok_slow', { reference, key })
    expect(r.status).toBe(503)
    expect(r.code).toBe('PAYMENT_PROVIDER_UNAVAILABLE')
    expect(r.ms).toBeLessThan(1200)
    const listed = (await api.get(`${PAY}/payments?reference=${reference}`, manager.token)).body.items
    expect(listed[0].status).toBe('failed')
    expect(kinds(listed[0])).toEqual(['failed', 'voided'])
    // After the provider's slow answer arrived, the key still answers with the recorded failure.
    await Bun.sleep(1600)
    const again = await authorize('tok_slow', { reference, key })
    expect(again.status).toBe(503)
    expect(kinds(await getPayment(listed[0].id))).toEqual(['failed', 'voided'])
  })

  test('capture takes the amount once, whatever the retries', async () => {
    const p = await authorized(4200)
    const key = unique('capture')
    const first = await action(server.url, 'payments.capture', { paymentId: p.id, key })
    const retry = await action(server.url, 'payments.capture', { paymentId: p.id, key })
    const otherKey = await action(server.url, 'payments.capture', { paymentId: p.id, key: unique('capture') })
    for (const r of [first, retry, otherKey]) {
      expect(r.ok).toBe(true)
      expect(r.result.status).toBe('captured')
      expect(r.result.captured).toBe(4200)
    }
    expect(kinds(await getPayment(p.id))).toEqual(['authorized', 'captured'])
    const voided = await action(server.url, 'payments.void', { paymentId: p.id, key: unique('void') })
    expect(voided.status).toBe(409)
    expect(voided.code).toBe('PAYMENT_CAPTURED')
  })

  test('void lets an authorization go; a voided payment cannot be captured', async () => {
    const p = await authorized()
    const key = unique('void')
    const r = await action(server.url, 'payments.void', { paymentId: p.id, key })
    expect(r.ok).toBe(true)
    expect(r.result.status).toBe('voided')
    expect((await action(server.url, 'payments.void', { paymentId: p.id, key })).result.status).toBe('voided')
    const capture = await action(server.url, 'payments.capture', { paymentId: p.id, key: unique('capture') })
    expect(capture.status).toBe(409)
    expect(capture.code).toBe('PAYMENT_NOT_CAPTURABLE')
    expect(kinds(await getPayment(p.id))).toEqual(['authorized', 'voided'])
  })

  test('refunds never exceed the capture, and a retried refund gives back once', async () => {
    const p = await authorized(1000)
    expect((await action(server.url, 'payments.capture', { paymentId: p.id, key: unique('capture') })).ok).toBe(true)
    const key = unique('refund')
    const part = await action(server.url, 'payments.refund', { paymentId: p.id, amount: 300, key })
    expect(part.result.status).toBe('partially_refunded')
    expect(part.result.refunded).toBe(300)
    expect((await action(server.url, 'payments.refund', { paymentId: p.id, amount: 300, key })).result.refunded).toBe(300)
    const tooMuch = await action(server.url, 'payments.refund', { paymentId: p.id, amount: 701, key: unique('refund') })
    expect(tooMuch.status).toBe(409)
    expect(tooMuch.code).toBe('REFUND_EXCEEDS_CAPTURE')
    const rest = await action(server.url, 'payments.refund', { paymentId: p.id, amount: 700, key: unique('refund') })
    expect(rest.result.status).toBe('refunded')
    expect(rest.result.refunded).toBe(1000)
    const after = await getPayment(p.id)
    expect(kinds(after)).toEqual(['authorized', 'captured', 'refunded', 'refunded'])
    expect(after.events.filter((e) => e.kind === 'refunded').map((e) => e.amount)).toEqual([300, 700])
  })

  test('an authorized payment is not refundable before capture', async () => {
    const p = await authorized()
    const r = await action(server.url, 'payments.refund', { paymentId: p.id, amount: 1, key: unique('refund') })
    expect(r.status).toBe(409)
    expect(r.code).toBe('PAYMENT_NOT_REFUNDABLE')
  })

  test('cancelAuthorization: an approval is voided, an unused key is spent so it never charges the card', async () => {
    const reference = unique('checkout')
    const key = unique('auth')
    const approved = await authorize('tok_ok', { key, reference })
    const cancelled = await action(server.url, 'payments.cancelAuthorization', { key, reference })
    expect(cancelled.result.id).toBe(approved.result.id)
    expect(cancelled.result.status).toBe('voided')
    expect(kinds(await getPayment(approved.result.id))).toEqual(['authorized', 'voided'])

    const unused = unique('auth')
    const spent = await action(server.url, 'payments.cancelAuthorization', { key: unused, reference })
    expect([spent.result.status, spent.result.amount]).toEqual(['voided', 0])
    const late = await authorize('tok_ok', { key: unused, reference })
    expect(late.status).toBe(409)
    expect(late.code).toBe('AUTHORIZATION_CANCELLED')
    expect((await action(server.url, 'payments.cancelAuthorization', { key: unused, reference })).result.id).toBe(spent.result.id)

    const takenKey = unique('auth')
    const taken = await authorize('tok_ok', { key: takenKey, reference })
    expect((await action(server.url, 'payments.capture', { paymentId: taken.result.id, key: unique('capture') })).ok).toBe(true)
    const tooLate = await action(server.url, 'payments.cancelAuthorization', { key: takenKey, reference })
    expect(tooLate.status).toBe(409)
    expect(tooLate.code).toBe('PAYMENT_CAPTURED')
  })

  test('unknown payments are 404 for actions and HTTP', async () => {
    const r = await action(server.url, 'payments.capture', { paymentId: 'nope', key: unique('capture') })
    expect(r.status).toBe(404)
    expectError(await api.get(`${PAY}/payments/nope`, manager.token), 404, 'PAYMENT_NOT_FOUND')
  })

  test('payments are for managers and admins; customers get 403, strangers 401', async () => {
    const p = await authorized()
    expectError(await api.get(`${PAY}/payments/${p.id}`, customer.token), 403)
    expectError(await api.get(`${PAY}/payments/${p.id}`), 401)
    expectError(await api.get(`${PAY}/payments`, customer.token), 403)
  })

  test('bad input is refused and changes nothing', async () => {
    const reference = unique('checkout')
    for (const input of [
      { amount: 0 },
      { amount: -5 },
      { amount: 1.5 },
      { currency: 'eur' },
      { method: 'cash' },
      { token: '' },
      { key: '' },
    ]) {
      const r = await authorize('tok_ok', { reference, ...input })
      expect(r.status).toBe(422)
    }
    expect((await api.get(`${PAY}/payments?reference=${reference}`, manager.token)).body.items).toEqual([])
    expectError(await api.get(`${PAY}/payments?status=bogus`, manager.token), 422)
    expectError(await api.get(`${PAY}/payments?cursor=garbage`, manager.token), 400, 'INVALID_CURSOR')
    expectError(await api.get(`${PAY}/payments?limit=0`, manager.token), 422)
  })

  test('list pages with a cursor, newest first', async () => {
    const reference = unique('checkout')
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await authorize('tok_ok', { reference })).result.id)
    const first = await api.get(`${PAY}/payments?reference=${reference}&limit=2`, manager.token)
    expect(first.body.items.map((p: any) => p.id)).toEqual([ids[2], ids[1]])
    const second = await api.get(`${PAY}/payments?reference=${reference}&limit=2&cursor=${first.body.nextCursor}`, manager.token)
    expect(second.body.items.map((p: any) => p.id)).toEqual([ids[0]])
    expect(second.body.nextCursor).toBeNull()
  })
})

describe(`the provider's circuit breaker (${variant})`, () => {
  let breaking: TestServer
  beforeAll(async () => {
    breaking = await startServer({ PAYMENTS_BREAKER_FAILURES: '2', PAYMENTS_BREAKER_HALF_OPEN_MS: '500', PLUGINS: 'auth,payments,storefront' })
  })
  afterAll(async () => {
    await breaking?.stop()
  })

  test('consecutive provider failures open the circuit: calls fail fast with 503, then it closes again', async () => {
    for (let i = 0; i < 2; i++) expect((await authorize('tok_error', {}, breaking.url)).code).toBe('PAYMENT_PROVIDER_UNAVAILABLE')
    const refused = await authorize('tok_ok', {}, breaking.url)
    expect(refused.status).toBe(503)
    expect(refused.code).toBe('PAYMENT_PROVIDER_UNAVAILABLE')
    expect(refused.message).toContain('failing')
    const healed = await eventually(async () => {
      await Bun.sleep(100)
      const r = await authorize('tok_ok', {}, breaking.url)
      return r.ok ? r : undefined
    }, 3000)
    expect(healed?.result.status).toBe('authorized')
  })

  test('declines are answers, not failures: they never open the circuit', async () => {
    for (let i = 0; i < 4; i++) expect((await authorize('tok_declined', {}, breaking.url)).status).toBe(402)
    expect((await authorize('tok_ok', {}, breaking.url)).ok).toBe(true)
  })
})
