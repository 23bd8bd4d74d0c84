/**
 * Orders after checkout: reading them, the status machine (paid → fulfilling → shipped →
 * delivered, or cancelled / returned), cancellations and returns. Every status change is one
 * update conditional on the statuses it may leave, with its history row and its event in the same
 * transaction; cancellations and received returns record their side effects there too.
 */
import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm'
import type { Call } from '../../kernel/calls'
import type { Database, Db, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { OrderStatus } from '../../shared/contracts/orders'
import { AppError, Conflict, Forbidden, Invalid, NotFound } from '../../shared/errors'
import type { SideEffects } from './effects'
import type { OrdersSchema, ShippingAddress } from './schema'

type T = Tables<OrdersSchema>
type OrderRow = T['orders']['$inferSelect']
type ReturnRow = T['returns']['$inferSelect']

export interface Actor {
  id: string
  /** Managers and admins see and act on every order. */
  manager: boolean
}

export interface ReturnView {
  id: string
  orderId: string
  status: 'requested' | 'received'
  reason: string
  lines: { sku: string; quantity: number; unitPrice: number; warehouses: { warehouse: string; quantity: number }[] }[]
  amount: number
  createdAt: string
  receivedAt: string | null
}

export interface OrderView {
  id: string
  customerId: string
  checkoutId: string
  status: OrderStatus
  currency: string
  lines: { sku: string; name: string; unitPrice: number; quantity: number; lineTotal: number; returned: number; allocations: { warehouse: string; quantity: number }[] }[]
  totals: { subtotal: number; total: number; refunded: number }
  payment: { id: string; status: string; amount: number; captured: number; refunded: number } | null
  shippingAddress: ShippingAddress
  history: { from: OrderStatus | null; to: OrderStatus; at: string; note: string | null }[]
  returns: ReturnView[]
  createdAt: string
  updatedAt: string
}

export interface OrderSummary {
  id: string
  customerId: string
  status: OrderStatus
  total: number
  currency: string
  refunded: number
  createdAt: string
  updatedAt: string
}

/** Where each status may be reached from. */
const FROM: Record<string, OrderStatus[]> = {
  fulfilling: ['paid'],
  shipped: ['paid', 'fulfilling'],
  delivered: ['shipped'],
  cancelled: ['paid', 'fulfilling'],
  returned: ['delivered'],
}

export class OrderService {
  constructor(
    private readonly d: { db: Database; t: T; call: Call; effects: SideEffects; publish: PluginContext['events']['publish']; callTimeoutMs: number },
  ) {}

  list(actor: Actor, filter: { status?: string; customerId?: string }, limit: number, before?: string) {
    const { orders } = this.d.t
    return this.d.db.read
      .select()
      .from(orders)
      .where(
        and(
          actor.manager ? (filter.customerId ? eq(orders.customerId, filter.customerId) : undefined) : eq(orders.customerId, actor.id),
          filter.status ? eq(orders.status, filter.status) : undefined,
          before ? lt(orders.id, before) : undefined,
        ),
      )
      .orderBy(desc(orders.id))
      .limit(limit)
  }

  async get(actor: Actor, id: string): Promise<OrderView> {
    return this.view(await this.visible(actor, id))
  }

  /** paid → fulfilling (managers). */
  fulfil(actor: Actor, id: string) {
    return this.move(actor, id, 'fulfilling')
  }

  /** paid | fulfilling → shipped (managers). */
  ship(actor: Actor, id: string) {
    return this.move(actor, id, 'shipped')
  }

  /** shipped → delivered (managers). */
  deliver(actor: Actor, id: string) {
    return this.move(actor, id, 'delivered')
  }

  /** Before shipping, by its customer or a manager: the goods go back on hand and the whole amount is refunded. */
  async cancel(actor: Actor, id: string): Promise<OrderView> {
    const order = await this.visible(actor, id)
    const lines = await this.lines(this.d.db.read, id)
    const effect = await this.d.db.transaction(async (tx) => {
      await this.transition(tx, order, 'cancelled', actor.id, actor.manager ? 'cancelled by a manager' : 'cancelled by the customer')
      return this.d.effects.record(tx, {
        kind: 'cancel',
        orderId: id,
        restockReference: `cancel:${id}`,
        restock: lines.flatMap((l) => l.allocations.map((a) => ({ sku: l.sku, warehouse: a.warehouse, quantity: a.quantity }))),
        paymentId: order.paymentId,
        refundAmount: order.total,
        refundKey: `cancel:${id}:refund`,
      })
    })
    await this.d.effects.performSoon(effect)
    return this.view(await this.visible(actor, id))
  }

  /** A customer asks to send back lines of a delivered order: never more than bought minus already returned. */
  async requestReturn(actor: Actor, id: string, request: { lines: { sku: string; quantity: number }[]; reason: string }): Promise<ReturnView> {
    const order = await this.visible(actor, id)
    if (order.customerId !== actor.id) throw new Forbidden('a return is asked for by the customer who bought the order')
    const seen = new Set<string>()
    request.lines.forEach((l, i) => {
      if (seen.has(l.sku)) throw new Invalid(`SKU ${l.sku} appears on more than one line`, [{ path: `/lines/${i}/sku`, message: 'duplicate SKU' }], 'DUPLICATE_LINE')
      seen.add(l.sku)
    })
    const { orderLines, returns, orders } = this.d.t
    const row = await this.d.db.transaction(async (tx) => {
      if (order.status !== 'delivered') throw illegal(order, 'returned', 'a return')
      const lines: ReturnRow['lines'] = []
      for (const [i, l] of request.lines.entries()) {
        // The conditional update is what keeps concurrent returns from exceeding the purchase.
        const [line] = await tx
          .update(orderLines)
          .set({ returned: sql`${orderLines.returned} + ${l.quantity}` })
          .where(and(eq(orderLines.orderId, id), eq(orderLines.sku, l.sku), sql`${orderLines.returned} + ${l.quantity} <= ${orderLines.quantity}`))
          .returning()
        if (!line) {
          const [bought] = await tx.select().from(orderLines).where(and(eq(orderLines.orderId, id), eq(orderLines.sku, l.sku)))
          if (!bought) throw new Invalid(`order ${id} has no line ${l.sku}`, [{ path: `/lines/${i}/sku`, message: 'not in this order' }], 'UNKNOWN_LINE')
          throw new Invalid(
            `only ${bought.quantity - bought.returned} of ${l.sku} can still be returned`,
            [{ path: `/lines/${i}/quantity`, message: `at most ${bought.quantity - bought.returned}` }],
            'RETURN_EXCEEDS_PURCHASE',
          )
        }
        lines.push({ sku: l.sku, quantity: l.quantity, unitPrice: line.unitPrice, warehouses: takeFrom(line.allocations, line.returned - l.quantity, l.quantity) })
      }
      // Still delivered now that the lines are held: a concurrent status change would have moved it.
      const [still] = await tx.select({ status: orders.status }).from(orders).where(eq(orders.id, id))
      if (still.status !== 'delivered') throw illegal({ ...order, status: still.status }, 'returned', 'a return')
      const [created] = await tx
        .insert(returns)
        .values({
          id: Bun.randomUUIDv7(),
          orderId: id,
          customerId: order.customerId,
          status: 'requested',
          reason: request.reason.trim(),
          lines,
          amount: lines.reduce((n, l) => n + l.unitPrice * l.quantity, 0),
          createdAt: new Date(),
        })
        .returning()
      await this.d.publish('order.return.requested', { returnId: created.id, orderId: id, lines: lines.map((l) => ({ sku: l.sku, quantity: l.quantity })) })
      return created
    })
    return toReturnView(row)
  }

  /** The goods arrived (managers): back on hand, refunded; the order is `returned` once everything came back. */
  async receiveReturn(actor: Actor, returnId: string): Promise<ReturnView> {
    const { returns, orders } = this.d.t
    const { received, effect } = await this.d.db.transaction(async (tx) => {
      const [row] = await tx
        .update(returns)
        .set({ status: 'received', receivedAt: new Date() })
        .where(and(eq(returns.id, returnId), eq(returns.status, 'requested')))
        .returning()
      if (!row) {
        const [current] = await tx.select().from(returns).where(eq(returns.id, returnId))
        if (!current) throw new NotFound(`no return ${returnId}`, 'RETURN_NOT_FOUND')
        throw new Conflict(`return ${returnId} is ${current.status} already`, 'RETURN_ALREADY_RECEIVED')
      }
      const [order] = await tx.select().from(orders).where(eq(orders.id, row.orderId))
      const effect = await this.d.effects.record(tx, {
        kind: 'return',
        orderId: order.id,
        returnId: row.id,
        restockReference: `return:${row.id}`,
        restock: row.lines.flatMap((l) => l.warehouses.map((w) => ({ sku: l.sku, warehouse: w.warehouse, quantity: w.quantity }))),
        paymentId: order.paymentId,
        refundAmount: row.amount,
        refundKey: `return:${row.id}:refund`,
      })
      const lines = await this.lines(tx, order.id)
      const open = await tx
        .select({ id: returns.id })
        .from(returns)
        .where(and(eq(returns.orderId, order.id), eq(returns.status, 'requested')))
      if (open.length === 0 && lines.every((l) => l.returned === l.quantity))
        await this.transition(tx, order, 'returned', actor.id, 'every line came back')
      return { received: row, effect }
    })
    await this.d.effects.performSoon(effect)
    return toReturnView(received)
  }

  /** The order if the actor may see it: its customer, or a manager. Anyone else gets 404, as for a missing one. */
  private async visible(actor: Actor, id: string): Promise<OrderRow> {
    const { orders } = this.d.t
    const [row] = await this.d.db.read.select().from(orders).where(eq(orders.id, id))
    if (!row || (!actor.manager && row.customerId !== actor.id)) throw new NotFound(`no order ${id}`, 'ORDER_NOT_FOUND')
    return row
  }

  private async move(actor: Actor, id: string, to: OrderStatus): Promise<OrderView> {
    const order = await this.visible(actor, id)
    await this.d.db.transaction((tx) => this.transition(tx, order, to, actor.id, null))
    return this.view(await this.visible(actor, id))
  }

  /** One conditional update; 409 naming the current status when the order is not where `to` may come from. */
  private async transition(tx: Db, order: OrderRow, to: OrderStatus, actor: string, note: string | null): Promise<OrderRow> {
    const { orders, history } = this.d.t
    const from = FROM[to]
    const now = new Date()
    const [row] = await tx
      .update(orders)
      .set({ status: to, updatedAt: now })
      .where(and(eq(orders.id, order.id), inArray(orders.status, from)))
      .returning()
    if (!row) {
      const [current] = await tx.select().from(orders).where(eq(orders.id, order.id))
      throw illegal(current ?? order, to)
    }
    const previous = (await tx.select().from(history).where(eq(history.orderId, order.id)).orderBy(desc(history.id)).limit(1))[0]
    const fromStatus = (previous?.to ?? order.status) as OrderStatus
    await tx.insert(history).values({ id: Bun.randomUUIDv7(), orderId: order.id, from: fromStatus, to, actor, note, at: now })
    await this.d.publish('order.status.changed', { orderId: order.id, customerId: order.customerId, from: fromStatus, to })
    return row
  }

  private async lines(db: Pick<Db, 'select'>, orderId: string) {
    const { orderLines } = this.d.t
    return db.select().from(orderLines).where(eq(orderLines.orderId, orderId)).orderBy(asc(orderLines.sku))
  }

  async view(order: OrderRow): Promise<OrderView> {
    const { history, returns } = this.d.t
    const [lines, changes, returned, payment] = await Promise.all([
      this.lines(this.d.db.read, order.id),
      this.d.db.read.select().from(history).where(eq(history.orderId, order.id)).orderBy(asc(history.id)),
      this.d.db.read.select().from(returns).where(eq(returns.orderId, order.id)).orderBy(asc(returns.id)),
      this.paymentSummary(order.paymentId),
    ])
    return toOrderView({ order, lines, history: changes, returns: returned, payment })
  }

  /** The payment as payments sees it now; null when payments cannot answer (the order is still shown). */
  private async paymentSummary(paymentId: string): Promise<OrderView['payment']> {
    try {
      const p = await this.d.call('payments.get', { id: paymentId }, { timeoutMs: Math.min(2000, this.d.callTimeoutMs) })
      return { id: p.id, status: p.status, amount: p.amount, captured: p.captured, refunded: p.refunded }
    } catch {
      return null
    }
  }
}

export const toOrderSummary = (o: OrderRow): OrderSummary => ({
  id: o.id,
  customerId: o.customerId,
  status: o.status as OrderStatus,
  total: o.total,
  currency: o.currency,
  refunded: o.refunded,
  createdAt: o.createdAt.toISOString(),
  updatedAt: o.updatedAt.toISOString(),
})

/** An order with everything its view shows; lines and history in their order (sku, time). */
export interface OrderParts {
  order: OrderRow
  lines: T['orderLines']['$inferSelect'][]
  history: T['history']['$inferSelect'][]
  returns: ReturnRow[]
  payment: OrderView['payment']
}

export function toOrderView({ order, lines, history, returns, payment }: OrderParts): OrderView {
  const subtotal = lines.reduce((n, l) => n + l.unitPrice * l.quantity, 0)
  return {
    id: order.id,
    customerId: order.customerId,
    checkoutId: order.checkoutId,
    status: order.status as OrderStatus,
    currency: order.currency,
    lines: lines.map((l) => ({
      sku: l.sku,
      name: l.name,
      unitPrice: l.unitPrice,
      quantity: l.quantity,
      lineTotal: l.unitPrice * l.quantity,
      returned: l.returned,
      allocations: l.allocations,
    })),
    totals: { subtotal, total: order.total, refunded: order.refunded },
    payment,
    shippingAddress: order.shippingAddress,
    history: history.map((h) => ({ from: h.from as OrderStatus | null, to: h.to as OrderStatus, at: h.at.toISOString(), note: h.note })),
    returns: returns.map(toReturnView),
    createdAt: order.createdAt.toISOString(),
    updatedAt: order.updatedAt.toISOString(),
  }
}

const toReturnView = (r: ReturnRow): ReturnView => ({
  id: r.id,
  orderId: r.orderId,
  status: r.status as ReturnView['status'],
  reason: r.reason,
  lines: r.lines,
  amount: r.amount,
  createdAt: r.createdAt.toISOString(),
  receivedAt: r.receivedAt ? r.receivedAt.toISOString() : null,
})

function illegal(order: { id: string; status: string }, to: OrderStatus, what: string = `becoming ${to}`) {
  const from = FROM[to]
  return new AppError(409, 'INVALID_STATUS_TRANSITION', `order ${order.id} is ${order.status}; ${what} needs it to be ${from.join(' or ')}`, [
    { path: '/status', message: order.status },
  ])
}

/** The warehouses `quantity` units come back to: the line's allocations, after the `skip` units returned before. */
function takeFrom(allocations: { warehouse: string; quantity: number }[], skip: number, quantity: number) {
  const out: { warehouse: string; quantity: number }[] = []
  for (const a of allocations) {
    const free = Math.max(0, a.quantity - skip)
    skip = Math.max(0, skip - a.quantity)
    const q = Math.min(free, quantity)
    if (q > 0) out.push({ warehouse: a.warehouse, quantity: q })
    quantity -= q
    if (quantity === 0) break
  }
  return out
}
