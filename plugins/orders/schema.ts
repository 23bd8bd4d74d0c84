/**
 * The orders plugin's tables: carts, the checkout saga, orders with their lines and status history,
 * returns, and the side effects (restock + refund) of cancellations and returns. Money and
 * quantities are integers; prices are minor units of the order's currency.
 */
import { table } from '../../kernel/db/schema'

export interface ShippingAddress {
  name: string
  line1: string
  line2?: string
  city: string
  postalCode: string
  country: string
}
export interface PricedLine {
  sku: string
  name: string
  unitPrice: number
  quantity: number
}
export interface Allocation {
  sku: string
  warehouse: string
  quantity: number
}
export interface SagaError {
  status: number
  code: string
  message: string
}

export const schema = {
  carts: table(
    'orders_carts',
    (c) => ({
      id: c.id(),
      customerId: c.text('customer_id').notNull(),
      /** open → checked_out (a checkout holds it); a compensated checkout opens it again */
      status: c.text('status').notNull(),
      checkoutId: c.text('checkout_id'),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [c.index('orders_carts_customer').on(t.customerId, t.id)],
  ),
  cartItems: table(
    'orders_cart_items',
    (c) => ({
      cartId: c.text('cart_id').notNull(),
      sku: c.text('sku').notNull(),
      quantity: c.integer('quantity').notNull(),
      addedAt: c.timestamp('added_at').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.cartId, t.sku] })],
  ),
  /**
   * The checkout saga, one row per attempt. `step` is the next step to run (reserve → authorize →
   * place → complete); each step's result is written before the next one starts, so a restart knows
   * where it stopped. Whoever drives a saga holds its lease (`driver`, `leaseUntil`).
   */
  checkouts: table(
    'orders_checkouts',
    (c) => ({
      id: c.id(),
      cartId: c.text('cart_id').notNull(),
      customerId: c.text('customer_id').notNull(),
      idempotencyKey: c.text('idempotency_key').notNull(),
      /** Hash of the request: the same key with another request is refused. */
      requestHash: c.text('request_hash').notNull(),
      /** running → completed, or running → compensating → compensated */
      status: c.text('status').notNull(),
      step: c.text('step').notNull(),
      lines: c.json<PricedLine[]>('lines').notNull(),
      total: c.bigint('total').notNull(),
      currency: c.text('currency').notNull(),
      shippingAddress: c.json<ShippingAddress>('shipping_address').notNull(),
      allocations: c.json<Allocation[]>('allocations'),
      paymentId: c.text('payment_id'),
      orderId: c.text('order_id'),
      error: c.json<SagaError>('error'),
      driver: c.text('driver'),
      leaseUntil: c.timestamp('lease_until').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [
      c.uniqueIndex('orders_checkouts_customer_key').on(t.customerId, t.idempotencyKey),
      c.index('orders_checkouts_unsettled').on(t.status, t.leaseUntil),
      c.index('orders_checkouts_customer').on(t.customerId, t.id),
    ],
  ),
  orders: table(
    'orders_orders',
    (c) => ({
      id: c.id(),
      /** One order per checkout, whoever creates it. */
      checkoutId: c.text('checkout_id').notNull(),
      customerId: c.text('customer_id').notNull(),
      /** paid → fulfilling → shipped → delivered, or cancelled / returned */
      status: c.text('status').notNull(),
      total: c.bigint('total').notNull(),
      currency: c.text('currency').notNull(),
      paymentId: c.text('payment_id').notNull(),
      shippingAddress: c.json<ShippingAddress>('shipping_address').notNull(),
      /** What has been refunded so far (cancellation, received returns). */
      refunded: c.bigint('refunded').notNull().default(0),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [
      c.uniqueIndex('orders_orders_checkout').on(t.checkoutId),
      c.index('orders_orders_customer').on(t.customerId, t.id),
      c.index('orders_orders_status').on(t.status, t.id),
    ],
  ),
  orderLines: table(
    'orders_order_lines',
    (c) => ({
      orderId: c.text('order_id').notNull(),
      sku: c.text('sku').notNull(),
      name: c.text('name').notNull(),
      unitPrice: c.bigint('unit_price').notNull(),
      quantity: c.integer('quantity').notNull(),
      /** Asked back by returns so far; never above quantity (a conditional update). */
      returned: c.integer('returned').notNull().default(0),
      /** Which warehouses the units came from. */
      allocations: c.json<{ warehouse: string; quantity: number }[]>('allocations').notNull(),
    }),
    (c) => (t) => [c.primaryKey({ columns: [t.orderId, t.sku] })],
  ),
  history: table(
    'orders_status_history',
    (c) => ({
      id: c.id(),
      orderId: c.text('order_id').notNull(),
      from: c.text('from_status'),
      to: c.text('to_status').notNull(),
      actor: c.text('actor').notNull(),
      note: c.text('note'),
      at: c.timestamp('at').notNull(),
    }),
    (c) => (t) => [c.index('orders_status_history_order').on(t.orderId, t.id)],
  ),
  returns: table(
    'orders_returns',
    (c) => ({
      id: c.id(),
      orderId: c.text('order_id').notNull(),
      customerId: c.text('customer_id').notNull(),
      /** requested → received */
      status: c.text('status').notNull(),
      reason: c.text('reason').notNull(),
      lines: c.json<{ sku: string; quantity: number; unitPrice: number; warehouses: { warehouse: string; quantity: number }[] }[]>('lines').notNull(),
      amount: c.bigint('amount').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
      receivedAt: c.timestamp('received_at'),
    }),
    (c) => (t) => [c.index('orders_returns_order').on(t.orderId, t.id)],
  ),
  /**
   * What a cancellation or a received return still owes the world (goods back on hand, money back),
   * written with the status change; performed by idempotent calls, and by the sweep after a crash.
   */
  effects: table(
    'orders_effects',
    (c) => ({
      id: c.id(),
      /** cancel | return */
      kind: c.text('kind').notNull(),
      orderId: c.text('order_id').notNull(),
      returnId: c.text('return_id'),
      restockReference: c.text('restock_reference').notNull(),
      restock: c.json<Allocation[]>('restock').notNull(),
      paymentId: c.text('payment_id').notNull(),
      refundAmount: c.bigint('refund_amount').notNull(),
      refundKey: c.text('refund_key').notNull(),
      /** pending → done */
      status: c.text('status').notNull(),
      attempts: c.integer('attempts').notNull().default(0),
      lastError: c.text('last_error'),
      leaseUntil: c.timestamp('lease_until').notNull(),
      createdAt: c.timestamp('created_at').notNull(),
      doneAt: c.timestamp('done_at'),
    }),
    (c) => (t) => [c.index('orders_effects_pending').on(t.status, t.leaseUntil)],
  ),
}

export type OrdersSchema = typeof schema
