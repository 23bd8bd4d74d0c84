import { type Static, Type as t } from '@sinclair/typebox'
import { event } from './define'

/** CONTRACT.md §7: paid → fulfilling → shipped → delivered, or cancelled / returned. */
export const OrderStatus = t.Union([
  t.Literal('paid'),
  t.Literal('fulfilling'),
  t.Literal('shipped'),
  t.Literal('delivered'),
  t.Literal('cancelled'),
  t.Literal('returned'),
])
export type OrderStatus = Static<typeof OrderStatus>

const OrderChange = t.Object({ orderId: t.String(), customerId: t.String(), status: OrderStatus, total: t.Integer(), currency: t.String() })

export const ordersEvents = {
  'order.placed': event({ payload: OrderChange, doc: 'A checkout completed: the order exists, its stock is committed and its payment captured.' }),
  'order.status.changed': event({
    payload: t.Object({ orderId: t.String(), customerId: t.String(), from: OrderStatus, to: OrderStatus }),
    doc: 'An order moved along its status machine.',
  }),
  'order.return.requested': event({
    payload: t.Object({ returnId: t.String(), orderId: t.String(), lines: t.Array(t.Object({ sku: t.String(), quantity: t.Integer() })) }),
    doc: 'A customer asked to return lines of a delivered order.',
  }),
  'order.return.received': event({
    payload: t.Object({ returnId: t.String(), orderId: t.String(), refunded: t.Integer() }),
    doc: 'A return arrived: its lines are back in stock and refunded.',
  }),
}
