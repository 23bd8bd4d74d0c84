/**
 * The checkout saga (CONTRACT.md section 7), persisted in `orders_checkouts`:
 *
 *   reserve   inventory.reserveLines (reference = checkout id)        compensation: inventory.releaseReference
 *   authorize payments.authorize (key checkout:<id>:authorize)         compensation: payments.void
 *   place     the order row, unique per checkout (point of no return)
 *   complete  inventory.commitReference, then payments.capture
 *
 * Each step's result is written before the next starts (the authorization's with the order, in one
 * transaction; until then compensation voids it by its key). A failure before `place` runs the
 * compensations; after it, the saga only goes forward. Whoever drives a saga holds its lease; a
 * saga whose driver died (lease over) is picked up by the recovery sweep, at start and periodically,
 * and finished (the order exists) or compensated (it does not). Every call is idempotent by the
 * checkout id, so running a step twice has the effect of running it once.
 */
import { and, desc, eq, inArray, lt } from 'drizzle-orm'
import type { Call } from '../../kernel/calls'
import type { Database, Params, Tables } from '../../kernel/db'
import type { Logger } from '../../kernel/log'
import type { PluginContext } from '../../kernel/plugin'
import { AppError, Conflict, Invalid, NotFound, Unavailable, isAppError } from '../../shared/errors'
import type { Carts } from './carts'
import type { Allocation, OrdersSchema, SagaError, ShippingAddress } from './schema'
import type { OrderParts } from './service'

type T = Tables<OrdersSchema>
export type CheckoutRow = T['checkouts']['$inferSelect']
type Step = 'reserve' | 'authorize' | 'place' | 'complete'
/** A saga as this process drives it; `placed`: the order it created just now, so the answer needs no read-back. */
type Driven = CheckoutRow & { placed?: OrderParts }

/** How a checkout ended well: its order, and that order as it was placed when this request placed it. */
export interface CheckoutOutcome {
  orderId: string
  placed?: OrderParts
}

export interface CheckoutRequest {
  payment: { method: 'card'; token: string }
  shippingAddress: ShippingAddress
}

export interface CheckoutSettings {
  /** How long a driver owns a saga between renewals: longer than its slowest step. */
  leaseMs: number
  /** Deadline of each call a step makes. */
  callTimeoutMs: number
  /** Lifetime of the stock reservations, a backstop should every driver vanish. */
  reservationTtlSeconds: number
  /** Test hook: wait this long before running `pauseBefore` (to crash a saga mid-way on purpose). */
  pauseBefore?: Step
  pauseMs: number
}

export interface CheckoutView {
  id: string
  cartId: string
  status: 'running' | 'compensating' | 'completed' | 'compensated'
  step: Step
  total: number
  currency: string
  paymentId: string | null
  orderId: string | null
  error: SagaError | null
  createdAt: string
  updatedAt: string
}

const UNSETTLED = ['running', 'compensating']
const SWEEP_BATCH = 20

export class CheckoutSaga {
  /** Identifies this process as a driver in lease columns. */
  private readonly me = Bun.randomUUIDv7()
  /** The statements every checkout runs, built once. */
  private readonly q

  constructor(
    private readonly d: {
      db: Database
      t: T
      call: Call
      carts: Carts
      publish: PluginContext['events']['publish']
      log: Logger
      settings: CheckoutSettings
    },
  ) {
    const { db, t } = d
    const { carts, checkouts } = t
    this.q = {
      byKey: db.prepare('orders.checkoutByKey', (q, p: Params<{ customerId: string; key: string }>) =>
        q.select().from(checkouts).where(and(eq(checkouts.customerId, p('customerId')), eq(checkouts.idempotencyKey, p('key')))),
      ),
      takeCart: db.prepare('orders.takeCart', (q, p: Params<{ cartId: string; checkoutId: string; now: Date }>) =>
        q
          .update(carts)
          .set({ status: 'checked_out', checkoutId: p('checkoutId', carts.checkoutId), updatedAt: p('now', carts.updatedAt) })
          .where(and(eq(carts.id, p('cartId')), eq(carts.status, 'open')))
          .returning({ id: carts.id }),
      ),
      reserved: db.prepare('orders.checkoutReserved', (q, p: Params<{ id: string; driver: string; allocations: Allocation[]; leaseUntil: Date; now: Date }>) =>
        q
          .update(checkouts)
          .set({ step: 'authorize', allocations: p('allocations', checkouts.allocations), leaseUntil: p('leaseUntil', checkouts.leaseUntil), updatedAt: p('now', checkouts.updatedAt) })
          .where(and(eq(checkouts.id, p('id')), eq(checkouts.status, 'running'), eq(checkouts.driver, p('driver'))))
          .returning({ id: checkouts.id }),
      ),
      placed: db.prepare('orders.checkoutPlaced', (q, p: Params<{ id: string; driver: string; paymentId: string; orderId: string; leaseUntil: Date; now: Date }>) =>
        q
          .update(checkouts)
          .set({
            step: 'complete',
            paymentId: p('paymentId', checkouts.paymentId),
            orderId: p('orderId', checkouts.orderId),
            leaseUntil: p('leaseUntil', checkouts.leaseUntil),
            updatedAt: p('now', checkouts.updatedAt),
          })
          .where(and(eq(checkouts.id, p('id')), eq(checkouts.driver, p('driver'))))
          .returning({ id: checkouts.id }),
      ),
      completed: db.prepare('orders.checkoutCompleted', (q, p: Params<{ id: string; driver: string; now: Date }>) =>
        q
          .update(checkouts)
          .set({ status: 'completed', step: 'complete', updatedAt: p('now', checkouts.updatedAt) })
          .where(and(eq(checkouts.id, p('id')), eq(checkouts.status, 'running'), eq(checkouts.driver, p('driver'))))
          .returning({ id: checkouts.id }),
      ),
    }
  }

  /** Checks a cart out; resolves to the order, or throws what stopped it (after compensating). */
  async checkout(customerId: string, cartId: string, request: CheckoutRequest, idempotencyKey: string | null): Promise<CheckoutOutcome> {
    const key = idempotencyKey ?? `auto:${Bun.randomUUIDv7()}`
    const requestHash = sha256(JSON.stringify({ cartId, request }))
    const earlier = await this.byKey(customerId, key)
    if (earlier) return this.answerFor(earlier, requestHash)

    const cart = await this.d.carts.require(customerId, cartId)
    if (cart.status !== 'open') throw cartTaken(cart.id, cart.checkoutId)
    const priced = await this.d.carts.priceForCheckout(cartId)
    const { checkouts } = this.d.t
    const now = new Date()
    const id = Bun.randomUUIDv7()
    const started = await this.d.db.transaction(async (tx) => {
      // The cart is consumed by this checkout, so two checkouts of one cart can never both run.
      const [taken] = await this.q.takeCart(tx, { cartId, checkoutId: id, now })
      if (!taken) return undefined
      const row: CheckoutRow = {
          id,
          cartId,
          customerId,
          idempotencyKey: key,
          requestHash,
          status: 'running',
          step: 'reserve',
          lines: priced.lines,
          total: priced.total,
          currency: priced.currency,
          shippingAddress: request.shippingAddress,
          driver: this.me,
          leaseUntil: new Date(now.getTime() + this.d.settings.leaseMs),
          createdAt: now,
          updatedAt: now,
          allocations: null,
          paymentId: null,
          orderId: null,
          error: null,
        }
      const [inserted] = await this.d.db.insertMany(checkouts, [row], { onConflictDoNothing: true, returning: 'id' })
      // The same key won a moment ago: this transaction rolls back and gives the cart back.
      if (!inserted) throw new Conflict('a checkout with this Idempotency-Key is in progress', 'CHECKOUT_IN_PROGRESS')
      return row
    })
    if (!started) {
      const again = await this.byKey(customerId, key)
      if (again) return this.answerFor(again, requestHash)
      const current = await this.d.carts.require(customerId, cartId)
      throw cartTaken(cartId, current.checkoutId)
    }
    return this.outcome(await this.drive(started, request.payment.token))
  }

  async get(principal: { id: string; manager: boolean }, id: string): Promise<CheckoutView> {
    const { checkouts } = this.d.t
    const [row] = await this.d.db.read
      .select()
      .from(checkouts)
      .where(and(eq(checkouts.id, id), principal.manager ? undefined : eq(checkouts.customerId, principal.id)))
    if (!row) throw new NotFound(`no checkout ${id}`, 'CHECKOUT_NOT_FOUND')
    return toCheckoutView(row)
  }

  /** Newest first: the customer's own, or everyone's for managers. */
  list(principal: { id: string; manager: boolean }, filter: { cartId?: string; status?: string }, limit: number, before?: string) {
    const { checkouts } = this.d.t
    return this.d.db.read
      .select()
      .from(checkouts)
      .where(
        and(
          principal.manager ? undefined : eq(checkouts.customerId, principal.id),
          filter.cartId ? eq(checkouts.cartId, filter.cartId) : undefined,
          filter.status ? eq(checkouts.status, filter.status) : undefined,
          before ? lt(checkouts.id, before) : undefined,
        ),
      )
      .orderBy(desc(checkouts.id))
      .limit(limit)
  }

  /**
   * Recovery: every unsettled saga whose driver is gone (lease over) is claimed and settled here,
   * finished when its order exists and compensated when it does not.
   */
  async recover(): Promise<number> {
    const { checkouts } = this.d.t
    const stuck = await this.d.db.read
      .select({ id: checkouts.id })
      .from(checkouts)
      .where(and(inArray(checkouts.status, UNSETTLED), lt(checkouts.leaseUntil, new Date())))
      .orderBy(checkouts.leaseUntil)
      .limit(SWEEP_BATCH)
    let settled = 0
    for (const { id } of stuck) {
      const claimed = await this.claim(id)
      if (!claimed) continue // another replica took it
      try {
        await this.drive(this.resumable(claimed))
        settled++
      } catch (error) {
        this.d.log.warn({ err: error, checkout: id }, 'checkout recovery will try again')
      }
    }
    return settled
  }

  // ---------------------------------------------------------------------------------------------
  // driving
  // ---------------------------------------------------------------------------------------------

  /**
   * Runs the saga from where it stands to completed or compensated (or throws, leaving it to
   * recovery). The card token lives only in this request's memory: a saga resumed elsewhere never
   * authorizes, it compensates.
   */
  private async drive(c: Driven, cardToken?: string): Promise<Driven> {
    try {
      while (c.status === 'running') c = await this.step(c, cardToken)
    } catch (error) {
      if (c.status !== 'running' || !beforeOrder(c.step)) {
        // The order exists: it can only go forward. Let go of the lease so recovery retries at once.
        await this.letGo(c)
        throw error
      }
      c = await this.fail(c, sagaError(error, c.step as Step))
    }
    if (c.status !== 'compensating') return c
    try {
      return await this.compensate(c)
    } catch (error) {
      // The failure is recorded and the compensation will be finished by recovery; the client hears why it failed.
      this.d.log.warn({ err: error, checkout: c.id }, 'checkout compensation incomplete; recovery will finish it')
      await this.letGo(c)
      return c
    }
  }

  private async step(c: Driven, cardToken: string | undefined): Promise<Driven> {
    const step = c.step as Step
    if (this.d.settings.pauseBefore === step && this.d.settings.pauseMs > 0) await Bun.sleep(this.d.settings.pauseMs)
    const options = { timeoutMs: this.d.settings.callTimeoutMs }
    switch (step) {
      case 'reserve': {
        const { reservations } = await this.d.call(
          'inventory.reserveLines',
          { reference: c.id, lines: c.lines.map((l) => ({ sku: l.sku, quantity: l.quantity })), ttlSeconds: this.d.settings.reservationTtlSeconds },
          { ...options, idempotencyKey: `${c.id}:reserve` },
        )
        const allocations: Allocation[] = reservations.map((r) => ({ sku: r.sku, warehouse: r.warehouse, quantity: r.quantity }))
        const now = new Date()
        const leaseUntil = this.leaseEnd()
        // The saga as this update leaves it (only its id is read back: the rest is known here).
        const [row] = await this.d.db.transaction((tx) => this.q.reserved(tx, { id: c.id, driver: this.me, allocations, leaseUntil, now }))
        if (!row) throw lostLease(c.id)
        return { ...c, step: 'authorize', allocations, leaseUntil, updatedAt: now }
      }
      case 'authorize': {
        if (!cardToken) throw new Unavailable('the checkout lost its card details when its process stopped', 'CHECKOUT_INTERRUPTED')
        const payment = await this.d.call(
          'payments.authorize',
          { amount: c.total, currency: c.currency, method: 'card', token: cardToken, reference: c.id, key: authorizeKey(c) },
          options,
        )
        if (this.d.settings.pauseBefore === 'place' && this.d.settings.pauseMs > 0) await Bun.sleep(this.d.settings.pauseMs)
        // The payment is recorded with the order, in one transaction: a crash before it leaves the saga at
        // `authorize` without a payment, and compensation voids the authorization by its key.
        return this.place({ ...c, paymentId: payment.id })
      }
      case 'place':
        return this.place(c)
      case 'complete':
        return this.complete(c)
    }
  }

  /** Creates the order (once per checkout) and moves the saga past the point of no return, in one transaction. */
  private async place(c: CheckoutRow): Promise<Driven> {
    const { orders, orderLines, history, checkouts } = this.d.t
    return this.d.db.transaction(async (tx) => {
      const now = new Date()
      const orderId = Bun.randomUUIDv7()
      const fresh: T['orders']['$inferSelect'] = {
          id: orderId,
          checkoutId: c.id,
          customerId: c.customerId,
          status: 'paid',
          total: c.total,
          currency: c.currency,
          paymentId: c.paymentId!,
          shippingAddress: c.shippingAddress,
          refunded: 0,
          createdAt: now,
          updatedAt: now,
        }
      const [inserted] = await this.d.db.insertMany(orders, [fresh], { onConflictDoNothing: true, returning: 'id' })
      const order = inserted ? fresh : undefined
      let placed: OrderParts | undefined
      if (order) {
        const lines = c.lines
          .map((l) => ({
            orderId,
            sku: l.sku,
            name: l.name,
            unitPrice: l.unitPrice,
            quantity: l.quantity,
            returned: 0,
            allocations: (c.allocations ?? []).filter((a) => a.sku === l.sku).map((a) => ({ warehouse: a.warehouse, quantity: a.quantity })),
          }))
          .sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0))
        const created = { id: Bun.randomUUIDv7(), orderId, from: null, to: 'paid', actor: c.customerId, note: 'checkout', at: now }
        await this.d.db.insertMany(orderLines, lines)
        await this.d.db.insertMany(history, [created])
        placed = { order, lines, history: [created], returns: [], payment: null }
      }
      const existing = order ?? (await tx.select().from(orders).where(eq(orders.checkoutId, c.id)))[0]
      const leaseUntil = this.leaseEnd()
      const [row] = await this.q.placed(tx, { id: c.id, driver: this.me, paymentId: c.paymentId!, orderId: existing.id, leaseUntil, now })
      if (!row) throw lostLease(c.id)
      return { ...c, step: 'complete', orderId: existing.id, leaseUntil, updatedAt: now, placed }
    })
  }

  /** Stock leaves and money is taken; then the saga is complete and the order announced. */
  private async complete(c: Driven): Promise<Driven> {
    const options = { timeoutMs: this.d.settings.callTimeoutMs }
    try {
      await this.d.call('inventory.commitReference', { reference: c.id }, options)
    } catch (error) {
      // Only when every driver was away past the reservations' lifetime: the goods are gone, so is the order.
      if (isAppError(error) && (error.code === 'RESERVATION_EXPIRED' || error.code === 'RESERVATION_RELEASED')) return this.abandonOrder(c, error)
      throw error
    }
    const payment = await this.d.call('payments.capture', { paymentId: c.paymentId!, key: `checkout:${c.id}:capture` }, options)
    return this.d.db.transaction(async (tx) => {
      const now = new Date()
      const [row] = await this.q.completed(tx, { id: c.id, driver: this.me, now })
      if (!row) throw lostLease(c.id)
      await this.d.publish('order.placed', { orderId: c.orderId!, customerId: c.customerId, status: 'paid', total: c.total, currency: c.currency })
      const { id, status, amount, captured, refunded } = payment
      return { ...c, status: 'completed', step: 'complete', updatedAt: now, placed: c.placed && { ...c.placed, payment: { id, status, amount, captured, refunded } } }
    })
  }

  /** The reservations lapsed before commit: the order is cancelled and the saga compensated. */
  private async abandonOrder(c: CheckoutRow, cause: AppError): Promise<CheckoutRow> {
    const { orders, history } = this.d.t
    await this.d.db.transaction(async (tx) => {
      const now = new Date()
      const [order] = await tx
        .update(orders)
        .set({ status: 'cancelled', updatedAt: now })
        .where(and(eq(orders.id, c.orderId!), eq(orders.status, 'paid')))
        .returning()
      if (!order) return
      await tx.insert(history).values({ id: Bun.randomUUIDv7(), orderId: order.id, from: 'paid', to: 'cancelled', actor: 'system', note: 'stock reservation lapsed before checkout completed', at: now })
      await this.d.publish('order.status.changed', { orderId: order.id, customerId: order.customerId, from: 'paid', to: 'cancelled' })
    })
    return this.fail(c, { status: 409, code: 'OUT_OF_STOCK', message: `the stock held for this checkout lapsed: ${cause.message}` })
  }

  /** Records the failure and that compensation is under way (before any compensation runs). */
  private async fail(c: CheckoutRow, error: SagaError): Promise<CheckoutRow> {
    const { checkouts } = this.d.t
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .update(checkouts)
        .set({ status: 'compensating', error, updatedAt: new Date() })
        .where(and(eq(checkouts.id, c.id), eq(checkouts.driver, this.me)))
        .returning(),
    )
    if (!row) throw lostLease(c.id)
    return row
  }

  /** Gives back what the saga holds: its reservations and any authorization; then the cart opens again. */
  private async compensate(c: CheckoutRow): Promise<CheckoutRow> {
    await this.renew(c)
    const options = { timeoutMs: this.d.settings.callTimeoutMs }
    await this.d.call('inventory.releaseReference', { reference: c.id }, options)
    let paymentId = c.paymentId
    if (paymentId) await this.d.call('payments.void', { paymentId, key: `checkout:${c.id}:void` }, options)
    else if (c.step === 'authorize' && c.error?.code !== 'PAYMENT_DECLINED') paymentId = await this.authorizationInDoubt(c)
    const { checkouts, carts } = this.d.t
    return this.d.db.transaction(async (tx) => {
      const now = new Date()
      const [row] = await tx
        .update(checkouts)
        .set({ status: 'compensated', paymentId, updatedAt: now })
        .where(and(eq(checkouts.id, c.id), eq(checkouts.status, 'compensating'), eq(checkouts.driver, this.me)))
        .returning()
      if (!row) throw lostLease(c.id)
      // The customer may try again (another card, fewer units) with the same cart.
      await tx
        .update(carts)
        .set({ status: 'open', checkoutId: null, updatedAt: now })
        .where(and(eq(carts.id, c.cartId), eq(carts.checkoutId, c.id)))
      return row
    })
  }

  /**
   * The authorization was asked for but its answer never reached us (a crash, a timed-out or
   * failed call): payments makes sure the key holds nothing, voiding an approval or spending the
   * key so a late request cannot charge the card. Still in progress, or payments unreachable: throws,
   * and recovery asks again later.
   */
  private async authorizationInDoubt(c: CheckoutRow): Promise<string | null> {
    const payment = await this.d.call('payments.cancelAuthorization', { key: authorizeKey(c), reference: c.id }, { timeoutMs: this.d.settings.callTimeoutMs })
    return payment.id
  }

  // ---------------------------------------------------------------------------------------------
  // answers, leases, helpers
  // ---------------------------------------------------------------------------------------------

  /** What a request with a known key gets: the order, the recorded failure, or the saga settled now. */
  private async answerFor(c: Driven, requestHash: string): Promise<CheckoutOutcome> {
    if (c.requestHash !== requestHash)
      throw new Invalid('this Idempotency-Key was used for another checkout request', undefined, 'IDEMPOTENCY_KEY_REUSED')
    if (UNSETTLED.includes(c.status)) {
      const claimed = await this.claim(c.id)
      if (!claimed) throw new Conflict(`checkout ${c.id} is in progress`, 'CHECKOUT_IN_PROGRESS')
      c = await this.drive(this.resumable(claimed))
    }
    return this.outcome(c)
  }

  private outcome(c: Driven): CheckoutOutcome {
    if (c.status === 'completed') return { orderId: c.orderId!, placed: c.placed }
    if (c.status === 'running') throw new Unavailable(`checkout ${c.id} is not finished yet; retry with the same Idempotency-Key`, 'CHECKOUT_IN_PROGRESS')
    const e = c.error ?? { status: 503, code: 'CHECKOUT_FAILED', message: 'the checkout did not complete' }
    throw new AppError(e.status, e.code, e.message)
  }

  /** A saga taken over from a driver that died: one without its order is compensated, not continued. */
  private resumable(c: CheckoutRow): CheckoutRow {
    if (c.status === 'running' && beforeOrder(c.step))
      return { ...c, status: 'compensating', error: c.error ?? { status: 503, code: 'CHECKOUT_INTERRUPTED', message: 'the checkout was interrupted before the order was placed; nothing was charged' } }
    return c
  }

  /** Takes over a saga whose lease is over; undefined when someone holds it. */
  private async claim(id: string): Promise<CheckoutRow | undefined> {
    const { checkouts } = this.d.t
    const now = new Date()
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .update(checkouts)
        .set({ driver: this.me, leaseUntil: new Date(now.getTime() + this.d.settings.leaseMs), updatedAt: now })
        .where(and(eq(checkouts.id, id), inArray(checkouts.status, UNSETTLED), lt(checkouts.leaseUntil, now)))
        .returning(),
    )
    if (!row) return undefined
    // A saga whose status must change on takeover records it before anything else runs.
    const resumed = this.resumable(row)
    if (resumed.status === row.status) return row
    const [marked] = await this.d.db.transaction((tx) =>
      tx.update(checkouts).set({ status: resumed.status, error: resumed.error }).where(and(eq(checkouts.id, id), eq(checkouts.driver, this.me))).returning(),
    )
    return marked
  }

  /** Every step's transition renews the lease, so it only has to outlast one step. */
  private leaseEnd() {
    return new Date(Date.now() + this.d.settings.leaseMs)
  }

  private async renew(c: CheckoutRow) {
    const { checkouts } = this.d.t
    const [row] = await this.d.db.transaction((tx) =>
      tx
        .update(checkouts)
        .set({ leaseUntil: this.leaseEnd() })
        .where(and(eq(checkouts.id, c.id), eq(checkouts.driver, this.me)))
        .returning({ id: checkouts.id }),
    )
    if (!row) throw lostLease(c.id)
  }

  private async letGo(c: CheckoutRow) {
    const { checkouts } = this.d.t
    await this.d.db
      .transaction((tx) => tx.update(checkouts).set({ leaseUntil: new Date(0) }).where(and(eq(checkouts.id, c.id), eq(checkouts.driver, this.me))))
      .catch((error) => this.d.log.warn({ err: error, checkout: c.id }, 'could not let go of a checkout lease; it expires by itself'))
  }

  private async byKey(customerId: string, key: string) {
    const [row] = await this.q.byKey(this.d.db.read, { customerId, key })
    return row
  }
}

export const toCheckoutView = (c: CheckoutRow): CheckoutView => ({
  id: c.id,
  cartId: c.cartId,
  status: c.status as CheckoutView['status'],
  step: c.step as Step,
  total: c.total,
  currency: c.currency,
  paymentId: c.paymentId,
  orderId: c.orderId,
  error: c.error,
  createdAt: c.createdAt.toISOString(),
  updatedAt: c.updatedAt.toISOString(),
})

const beforeOrder = (step: string) => step === 'reserve' || step === 'authorize' || step === 'place'
const authorizeKey = (c: { id: string }) => `checkout:${c.id}:authorize`
const sha256 = (text: string) => new Bun.CryptoHasher('sha256').update(text).digest('hex')
const lostLease = (id: string) => new Unavailable(`checkout ${id} was taken over by another process`, 'CHECKOUT_TAKEN_OVER')
const cartTaken = (cartId: string, checkoutId: string | null) =>
  new Conflict(`cart ${cartId} is already checked out${checkoutId ? ` (checkout ${checkoutId})` : ''}`, 'CART_CHECKED_OUT')

/** What the client is told about a failed step. */
function sagaError(error: unknown, step: Step): SagaError {
  if (isAppError(error)) {
    // An SKU the catalog sells but no warehouse stocks is out of stock, not a missing resource.
    if (step === 'reserve' && (error.code === 'ITEM_NOT_FOUND' || error.code === 'OUT_OF_STOCK'))
      return { status: 409, code: 'OUT_OF_STOCK', message: error.message }
    if (error.status === 402 || error.status === 409 || error.status === 503) return { status: error.status, code: error.code, message: error.message }
    return { status: 503, code: 'CHECKOUT_STEP_FAILED', message: `${step} failed: ${error.message}` }
  }
  return { status: 503, code: 'CHECKOUT_STEP_FAILED', message: `${step} failed: ${(error as Error)?.message ?? 'unknown error'}` }
}

