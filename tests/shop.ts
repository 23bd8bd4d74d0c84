/**
 * A shop driven only through HTTP, for the orders, checkout and payments suites: products through
 * the catalog API, stock through inventory adjustments, carts and checkouts through orders, and
 * what each plugin says about the result (stock, reservations, ledger, payments).
 */
import { expect } from 'bun:test'
import { adminToken, client, expectStatus, userWithRole } from './harness'

export const ADDRESS = { name: 'Ada Buyer', line1: '1 Analytical Way', city: 'London', postalCode: 'N1 9GU', country: 'GB' }

let seq = 0
export const unique = (tag: string) => `${tag}-${Date.now().toString(36)}-${(seq++).toString(36)}`

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
    customer: () => userWithRole(url, 'customer', admin),

    async warehouse(code = unique('W').replace(/-/g, '_').slice(0, 32)) {
      expectStatus(await api.post('/api/v1/inventory/warehouses', { code, name: code }, manager.token), 201)
      return code
    },

    /** A product in the catalog and an inventory item of the same SKU, stocked per warehouse. */
    async product(options: { price?: number; currency?: string; stock?: Record<string, number>; name?: string } = {}) {
      const sku = unique('SKU')
      const created = await api.post(
        '/api/v1/catalog/products',
        { sku, name: options.name ?? `Thing ${sku}`, price: options.price ?? 1000, currency: options.currency ?? 'EUR' },
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
      return r.body.items as { id: string; status: string; step: string; paymentId: string | null; orderId: string | null; error: { status: number; code: string } | null }[]
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
