/**
 * A shop driven only through HTTP, for the orders, checkout and payments suites: products through
 * the catalog API, stock through inventory adjustments, carts and checkouts through orders, and
 * what each plugin says about the result (stock, reservations, ledger, payments).
 */
import { expect } from 'bun:test'
import { adminToken, client, eventually, expectStatus, userWithRole } from './harness'

export const ADDRESS = { name: 'Ada Buyer', line1: '1 Analytical Way', city: 'London', postalCode: 'N1 9GU', country: 'GB' }

let seq = 0
export const unique = (tag: string) => `${tag}-${Date.now().toString(36)}-${(seq++).toString(36)}`
/** A word of letters only, unique in this run: full-text parsers split words at digits differently (FTS5, tsvector). */
export const uniqueWord = (tag: string) => `${tag}${unique('').replace(/[^a-z0-9]/gi, '').toLowerCase().replace(/\d/g, (d) => 'abcdefghij'[Number(d)])}`

/** A checkout attempt as GET /orders/checkouts shows it. */
export interface Attempt {
  id: string
  cartId: string
  status: string
  step: string
  paymentId: string | null
  orderId: string | null
  error: { status: number; code: string } | null
}

export interface Level {
  sku: string
  warehouse: string
  onHand: number
  reserved: number
  available: number
}

/** `paymentsUrl`: where payments is served, when another process hosts it. */
export async function openShop(url: string, paymentsUrl = url) {
  const api = client(url)
  const payments = client(paymentsUrl)
  const admin = await adminToken(url)
  const manager = await userWithRole(url, 'manager', admin)

  const shop = {
    url,
    api,
    admin,
    manager,
    /** A newly registered customer, signed in by the registration itself. */
    async customer() {
      const email = `${unique('customer')}@tessera.test`.toLowerCase()
      const password = 'correct-horse-1'
      const reg = await api.post('/api/v1/auth/register', { email, password, name: 'Customer' })
      expectStatus(reg, 201)
      return { email, password, id: reg.body.user.id as string, token: reg.body.accessToken as string, refreshToken: reg.body.refreshToken as string }
    },

    async warehouse(code = unique('W').replace(/-/g, '_').slice(0, 32)) {
      expectStatus(await api.post('/api/v1/inventory/warehouses', { code, name: code }, manager.token), 201)
      return code
    },

    /** A catalog category (at the root, or under `parentId`); returns its id. */
    async category(slug: string, name: string, parentId?: string) {
      const created = await api.post('/api/v1/catalog/categories', { slug, name, ...(parentId ? { parentId } : {}) }, manager.token)
      expectStatus(created, 201)
      return created.body.id as string
    },

    /** A product in the catalog and an inventory item of the same SKU, stocked per warehouse. */
    async product(
      options: { price?: number; currency?: string; stock?: Record<string, number>; name?: string; description?: string; categoryId?: string } = {},
    ) {
      const sku = unique('SKU')
      const created = await api.post(
        '/api/v1/catalog/products',
        {
          sku,
          name: options.name ?? `Thing ${sku}`,
          price: options.price ?? 1000,
          currency: options.currency ?? 'EUR',
          ...(options.description ? { description: options.description } : {}),
          ...(options.categoryId ? { categoryId: options.categoryId } : {}),
        },
        manager.token,
      )
      expectStatus(created, 201)
      expectStatus(await api.post('/api/v1/inventory/items', { sku, name: `Thing ${sku}` }, manager.token), 201)
      for (const [warehouse, quantity] of Object.entries(options.stock ?? {}))
        expectStatus(await api.post('/api/v1/inventory/adjustments', { sku, warehouse, delta: quantity, reason: 'opening stock' }, manager.token), 201)
      return sku
    },

    async cart(token: string, lines: [sku: string, quantity: number][] = []) {
      const cart = await api.post('/api/v1/orders/carts', undefined, token)
      expectStatus(cart, 201)
      for (const [sku, quantity] of lines) expectStatus(await api.post(`/api/v1/orders/carts/${cart.body.id}/items`, { sku, quantity }, token), 201)
      return cart.body.id as string
    },

    checkout(token: string, cartId: string, card = 'tok_ok', key: string | null = unique('checkout')) {
      return api.post(
        `/api/v1/orders/carts/${cartId}/checkout`,
        { payment: { method: 'card', token: card }, shippingAddress: ADDRESS },
        token,
        key ? { 'idempotency-key': key } : {},
      )
    },

    async level(sku: string, warehouse: string): Promise<Level> {
      const r = await api.get(`/api/v1/inventory/stock?sku=${encodeURIComponent(sku)}&warehouse=${encodeURIComponent(warehouse)}`, manager.token)
      expectStatus(r, 200)
      expect(r.body.items.length).toBe(1)
      return r.body.items[0]
    },

    /** Every warehouse's level of a SKU, summed. */
    async stock(sku: string) {
      const r = await api.get(`/api/v1/inventory/stock?sku=${encodeURIComponent(sku)}&limit=200`, manager.token)
      expectStatus(r, 200)
      const levels = r.body.items as Level[]
      return levels.reduce((s, l) => ({ onHand: s.onHand + l.onHand, reserved: s.reserved + l.reserved, available: s.available + l.available }), {
        onHand: 0,
        reserved: 0,
        available: 0,
      })
    },

    async reservations(filter: { reference?: string; sku?: string; status?: string }) {
      const q = new URLSearchParams({ limit: '200', ...filter } as Record<string, string>)
      const r = await api.get(`/api/v1/inventory/reservations?${q}`, manager.token)
      expectStatus(r, 200)
      return r.body.items as { id: string; sku: string; warehouse: string; quantity: number; reference: string; status: string }[]
    },

    async movements(sku: string) {
      const r = await api.get(`/api/v1/inventory/movements?sku=${encodeURIComponent(sku)}&limit=200`, manager.token)
      expectStatus(r, 200)
      return r.body.items as { sku: string; warehouse: string; delta: number; onHandAfter: number; reason: string; source: string }[]
    },

    async payment(id: string) {
      const r = await payments.get(`/api/v1/payments/payments/${id}`, manager.token)
      expectStatus(r, 200)
      return r.body as { id: string; status: string; amount: number; captured: number; refunded: number; reference: string; events: { kind: string; amount: number }[] }
    },

    async paymentsOf(reference: string) {
      const r = await payments.get(`/api/v1/payments/payments?reference=${encodeURIComponent(reference)}`, manager.token)
      expectStatus(r, 200)
      return r.body.items as { id: string; status: string; amount: number; captured: number; refunded: number; events: { kind: string; amount: number }[] }[]
    },

    /** The customer's checkout attempts for a cart, newest first. */
    async checkouts(token: string, cartId: string) {
      const r = await api.get(`/api/v1/orders/checkouts?cartId=${cartId}`, token)
      expectStatus(r, 200)
      return r.body.items as Attempt[]
    },

    /** The SKUs a catalog search lists, page after page (`limit` per page), with the number of pages it took. */
    async search(query: Record<string, string | number>, limit = 50) {
      const skus: string[] = []
      let pages = 0
      for (let cursor: string | null = ''; cursor !== null; pages++) {
        const q = new URLSearchParams({ ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])), limit: String(limit), ...(cursor ? { cursor } : {}) })
        const r = await api.get(`/api/v1/catalog/products?${q}`)
        expectStatus(r, 200)
        skus.push(...r.body.items.map((p: { sku: string }) => p.sku))
        cursor = r.body.nextCursor
      }
      return { skus, pages }
    },

    /** The cart's latest checkout once it is settled (completed or compensated), within `ms`. */
    async settled(token: string, cartId: string, ms = 15_000) {
      const attempt = await eventually(async () => {
        const [latest] = await shop.checkouts(token, cartId)
        return latest && (latest.status === 'completed' || latest.status === 'compensated') ? latest : undefined
      }, ms)
      if (!attempt) throw new Error(`the checkout of cart ${cartId} did not settle within ${ms} ms: ${JSON.stringify(await shop.checkouts(token, cartId))}`)
      return attempt
    },

    /**
     * What a settled checkout left behind is whole: completed, its order is paid with every
     * reservation committed and the amount captured; compensated, no order, nothing reserved and
     * no money held.
     */
    async expectWhole(attempt: Attempt, amount: number) {
      const reservations = await shop.reservations({ reference: attempt.id })
      const payments = await shop.paymentsOf(attempt.id)
      if (attempt.status === 'completed') {
        expect((await shop.order(attempt.orderId!)).status).toBe('paid')
        expect(reservations.length).toBeGreaterThan(0)
        expect(reservations.map((r) => r.status).filter((s) => s !== 'committed')).toEqual([])
        expect(payments.map((p) => [p.status, p.amount, p.captured])).toEqual([['captured', amount, amount]])
      } else {
        expect(attempt.status).toBe('compensated')
        expect(attempt.orderId).toBeNull()
        expect(reservations.map((r) => r.status).filter((s) => s !== 'released')).toEqual([])
        for (const p of payments) expect(['declined', 'failed', 'voided']).toContain(p.status)
      }
    },

    async order(id: string, token = manager.token) {
      const r = await api.get(`/api/v1/orders/orders/${id}`, token)
      expectStatus(r, 200)
      return r.body
    },
  }
  return shop
}

export type Shop = Awaited<ReturnType<typeof openShop>>
