/**
 * Payments: authorize, capture, void and refund through a provider, each idempotent by its key, with
 * the payment and its history in this plugin's tables. No HTTP here.
 *
 * An authorization is recorded as `pending` before the provider is asked, with a lease: a caller
 * that dies mid-call leaves a pending row whose lease runs out, and the next caller with the same
 * key (or the sweep) takes over. An authorization whose outcome is unknown (timeout, provider
 * error, open circuit) is `failed` and voided at the provider by its key, so no money stays held;
 * when that void cannot be done now, `voidPending` keeps it for the sweep.
 */
import { and, desc, eq, lt, sql } from 'drizzle-orm'
import type { Database, Db, Params, Reader, Tables } from '../../kernel/db'
import type { PluginContext } from '../../kernel/plugin'
import type { Payment, PaymentStatus } from '../../shared/contracts/payments'
import { AppError, Conflict, Invalid, NotFound } from '../../shared/errors'
import { type GuardedProvider, ProviderRefusal, ProviderUnavailable } from './provider'
import type { PaymentsSchema } from './schema'

type T = Tables<PaymentsSchema>
type PaymentRow = T['payments']['$inferSelect']
type EventRow = T['events']['$inferSelect']
type EventKind = Payment['events'][number]['kind']

export class PaymentDeclined extends AppError {
  constructor(message = 'the payment was declined') {
    super(402, 'PAYMENT_DECLINED', message)
  }
}

/** Unknown-outcome authorizations voided per sweep. */
const SWEEP_BATCH = 50

export interface PaymentsDeps {
  db: Database
  t: T
  provider: GuardedProvider
  publish: PluginContext['events']['publish']
  /** How long a pending authorization belongs to its caller: longer than one provider call. */
  leaseMs: number
}

export class PaymentsService {
  /** The statements of every authorization and capture, built once. */
  private readonly q

  constructor(private readonly d: PaymentsDeps) {
    const { db, t } = d
    const { payments, events, operations } = t
    this.q = {
      byId: db.prepare('payments.byId', (q, p: Params<{ id: string }>) => q.select().from(payments).where(eq(payments.id, p('id')))),
      history: db.prepare('payments.history', (q, p: Params<{ paymentId: string }>) =>
        q.select().from(events).where(eq(events.paymentId, p('paymentId'))).orderBy(events.id),
      ),
      operation: db.prepare('payments.operation', (q, p: Params<{ key: string }>) => q.select().from(operations).where(eq(operations.key, p('key')))),
      answered: db.prepare('payments.answered', (q, p: Params<{ id: string; status: string; providerRef: string | null; now: Date }>) =>
        q
          .update(payments)
          .set({ status: p('status', payments.status), providerRef: p('providerRef', payments.providerRef), updatedAt: p('now', payments.updatedAt) })
          .where(and(eq(payments.id, p('id')), eq(payments.status, 'pending')))
          .returning(),
      ),
      captured: db.prepare('payments.captured', (q, p: Params<{ id: string; amount: number; now: Date }>) =>
        q
          .update(payments)
          .set({ status: 'captured', captured: p('amount', payments.captured), updatedAt: p('now', payments.updatedAt) })
          .where(and(eq(payments.id, p('id')), eq(payments.status, 'authorized')))
          .returning(),
      ),
    }
  }

  private get provider() {
    return this.d.provider.provider
  }

  async authorize(input: { amount: number; currency: string; token: string; reference: string; key: string }): Promise<Payment> {
    let row = await this.claim(input)
    if (row.status !== 'pending') return this.settled(row)
    let answer
    try {
      answer = await this.d.provider.run('authorize', (signal) =>
        this.provider.authorize({ key: input.key, amount: input.amount, currency: input.currency, token: input.token }, signal),
      )
    } catch (error) {
      await this.giveUp(row, (error as Error).message)
      throw error
    }
    const outcome = await this.d.db.transaction(async (tx) => {
      const status: PaymentStatus = answer.approved ? 'authorized' : 'declined'
      const [done] = await this.q.answered(tx, { id: row.id, status, providerRef: answer.approved ? answer.authorizationId : null, now: new Date() })
      // The sweep gave up on it meanwhile (and voids it by key): its verdict stands.
      if (!done) return { row: await this.require(tx, row.id) }
      // A pending payment has no history yet, so this answer is all of it.
      const history = [await this.record(tx, done.id, answer.approved ? 'authorized' : 'declined', done.amount, answer.approved ? null : answer.reason)]
      if (answer.approved) await this.d.publish('payment.authorized', change(done, done.amount))
      return { row: done, history }
    })
    return this.settled(outcome.row, outcome.history)
  }

  async capture(paymentId: string, key: string): Promise<Payment> {
    const replay = await this.replay(paymentId, key, 'capture')
    if (replay) return replay
    const p = await this.require(this.d.db.read, paymentId)
    if (p.status === 'captured' || p.status === 'refunded' || p.status === 'partially_refunded') return this.view(p)
    if (p.status !== 'authorized') throw new Conflict(`payment ${p.id} is ${p.status}; only an authorized payment can be captured`, 'PAYMENT_NOT_CAPTURABLE')
    await this.ask('capture', (signal) => this.provider.capture({ key, authorizationId: p.providerRef!, amount: p.amount }, signal))
    return this.apply(paymentId, key, 'capture', p.amount, async (tx) => {
      const [row] = await this.q.captured(tx, { id: paymentId, amount: p.amount, now: new Date() })
      if (!row) return undefined
      await this.record(tx, row.id, 'captured', row.amount, null)
      await this.d.publish('payment.captured', change(row, row.amount))
      return row
    })
  }

  async void(paymentId: string, key: string): Promise<Payment> {
    const replay = await this.replay(paymentId, key, 'void')
    if (replay) return replay
    const p = await this.require(this.d.db.read, paymentId)
    // Nothing is held by these: voiding them is a no-op.
    if (p.status === 'voided' || p.status === 'declined' || p.status === 'failed') return this.view(p)
    if (p.status === 'pending') throw new Conflict(`payment ${p.id} is still being authorized`, 'PAYMENT_IN_PROGRESS')
    if (p.status !== 'authorized') throw new Conflict(`payment ${p.id} is ${p.status}; refund it instead`, 'PAYMENT_CAPTURED')
    await this.ask('void', (signal) => this.provider.void({ key, authorizeKey: p.authorizeKey }, signal))
    return this.apply(paymentId, key, 'void', 0, async (tx) => {
      const { payments } = this.d.t
      const [row] = await tx
        .update(payments)
        .set({ status: 'voided', updatedAt: new Date() })
        .where(and(eq(payments.id, paymentId), eq(payments.status, 'authorized')))
        .returning()
      if (!row) return undefined
      await this.record(tx, row.id, 'voided', row.amount, null)
      await this.d.publish('payment.voided', change(row, row.amount))
      return row
    })
  }

  async refund(paymentId: string, amount: number, key: string): Promise<Payment> {
    const replay = await this.replay(paymentId, key, 'refund', amount)
    if (replay) return replay
    const p = await this.require(this.d.db.read, paymentId)
    if (p.status !== 'captured' && p.status !== 'partially_refunded')
      throw new Conflict(`payment ${p.id} is ${p.status}; only a captured payment can be refunded`, 'PAYMENT_NOT_REFUNDABLE')
    if (p.captured - p.refunded < amount)
      throw new Conflict(`refund of ${amount} exceeds the ${p.captured - p.refunded} left of payment ${p.id}`, 'REFUND_EXCEEDS_CAPTURE')
    await this.ask('refund', (signal) => this.provider.refund({ key, authorizationId: p.providerRef!, amount }, signal))
    return this.apply(paymentId, key, 'refund', amount, async (tx) => {
      const { payments } = this.d.t
      const [row] = await tx
        .update(payments)
        .set({
          refunded: sql`${payments.refunded} + ${amount}`,
          status: sql`case when ${payments.refunded} + ${amount} >= ${payments.captured} then 'refunded' else 'partially_refunded' end`,
          updatedAt: new Date(),
        })
        .where(and(eq(payments.id, paymentId), sql`${payments.captured} - ${payments.refunded} >= ${amount}`))
        .returning()
      if (!row) throw new Conflict(`refund of ${amount} exceeds what is left of payment ${paymentId}`, 'REFUND_EXCEEDS_CAPTURE')
      await this.record(tx, row.id, 'refunded', amount, null)
      await this.d.publish('payment.refunded', change(row, amount))
      return row
    })
  }

  /**
   * For a caller that does not know what became of its authorization (it crashed, or its call timed
   * out): afterwards the key holds no money. A key never used is spent with a voided payment of 0,
   * so a late authorize with it is refused instead of charging the card.
   */
  async cancelAuthorization(key: string, reference: string): Promise<Payment> {
    const { payments } = this.d.t
    const now = new Date()
    const [spent] = await this.d.db.transaction(async (tx) => {
      const rows = await tx
        .insert(payments)
        .values({
          id: Bun.randomUUIDv7(),
          reference,
          provider: this.provider.id,
          authorizeKey: key,
          status: 'voided',
          amount: 0,
          currency: 'XXX',
          leaseUntil: now,
          createdAt: now,
          updatedAt: now,
        })
        .onConflictDoNothing()
        .returning()
      if (rows[0]) await this.record(tx, rows[0].id, 'voided', 0, 'cancelled before any authorization was made: the key is spent')
      return rows
    })
    if (spent) return this.view(spent)
    const [row] = await this.d.db.read.select().from(payments).where(eq(payments.authorizeKey, key))
    if (row.status === 'pending') {
      if (row.leaseUntil > now) throw new Conflict(`payment ${row.id} is still being authorized`, 'PAYMENT_IN_PROGRESS')
      // Its caller died mid-call: the outcome is unknown, so it is voided by key.
      const failed = await this.markFailed(row, 'cancelled by its caller while the outcome was unknown', true)
      if (failed) await this.voidByKey(failed).catch(() => {})
      return this.get(row.id)
    }
    if (row.status === 'authorized') return this.void(row.id, `${key}:cancel`)
    if (row.status === 'captured' || row.status === 'refunded' || row.status === 'partially_refunded')
      throw new Conflict(`payment ${row.id} is ${row.status}; refund it instead`, 'PAYMENT_CAPTURED')
    return this.view(row) // declined, failed (voided by key, now or by the sweep) or voided: nothing is held
  }

  async get(id: string): Promise<Payment> {
    return this.view(await this.require(this.d.db.read, id))
  }

  /** Newest first. */
  list(filter: { reference?: string; status?: string }, limit: number, before?: string) {
    const { payments } = this.d.t
    return this.d.db.read
      .select()
      .from(payments)
      .where(
        and(
          filter.reference ? eq(payments.reference, filter.reference) : undefined,
          filter.status ? eq(payments.status, filter.status) : undefined,
          before ? lt(payments.id, before) : undefined,
        ),
      )
      .orderBy(desc(payments.id))
      .limit(limit)
  }

  /**
   * Settles what callers left behind: pending authorizations whose lease ran out (their caller died)
   * become failed, and failed ones are voided at the provider by key.
   */
  async sweep(): Promise<void> {
    const { payments } = this.d.t
    const now = new Date()
    const abandoned = await this.d.db.read
      .select()
      .from(payments)
      .where(and(eq(payments.status, 'pending'), lt(payments.leaseUntil, now)))
      .limit(SWEEP_BATCH)
    for (const row of abandoned) await this.markFailed(row, 'its caller stopped waiting before the provider answered', true)
    const unsettled = await this.d.db.read
      .select()
      .from(payments)
      .where(and(eq(payments.voidPending, true), eq(payments.status, 'failed')))
      .limit(SWEEP_BATCH)
    for (const row of unsettled) await this.voidByKey(row).catch(() => {})
  }

  /** The payment with its history (read, unless the caller knows it: it wrote all of it just now). */
  async view(row: PaymentRow, known?: EventRow[]): Promise<Payment> {
    const history = known ?? (await this.q.history(this.d.db.read, { paymentId: row.id }))
    return {
      id: row.id,
      reference: row.reference,
      provider: row.provider,
      status: row.status as PaymentStatus,
      amount: row.amount,
      currency: row.currency,
      captured: row.captured,
      refunded: row.refunded,
      createdAt: row.createdAt.toISOString(),
      events: history.map((e) => ({ kind: e.kind as EventKind, amount: e.amount, at: e.at.toISOString(), detail: e.detail })),
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** The payment of this authorization key: a new pending one, or the one the key made before. */
  private async claim(input: { amount: number; currency: string; reference: string; key: string }): Promise<PaymentRow> {
    const { payments } = this.d.t
    const now = new Date()
    const leaseUntil = new Date(now.getTime() + this.d.leaseMs)
    return this.d.db.transaction(async (tx) => {
      const pending: PaymentRow = {
        id: Bun.randomUUIDv7(),
        reference: input.reference,
        provider: this.provider.id,
        authorizeKey: input.key,
        status: 'pending',
        amount: input.amount,
        currency: input.currency,
        captured: 0,
        refunded: 0,
        providerRef: null,
        leaseUntil,
        voidPending: false,
        createdAt: now,
        updatedAt: now,
      }
      const [created] = await this.d.db.insertMany(payments, [pending], { onConflictDoNothing: true, returning: 'id' })
      if (created) return pending
      const [first] = await tx.select().from(payments).where(eq(payments.authorizeKey, input.key))
      if (first.status === 'voided' && first.providerRef === null) return first // a spent key: settled() refuses it
      if (first.amount !== input.amount || first.currency !== input.currency || first.reference !== input.reference)
        throw new Invalid('this key was used for another authorization', [{ path: '/key', message: 'key reused' }], 'IDEMPOTENCY_KEY_REUSED')
      if (first.status !== 'pending') return first
      // Its first caller is gone once the lease ran out; the provider answers the same key the same way.
      const [taken] = await tx
        .update(payments)
        .set({ leaseUntil, updatedAt: now })
        .where(and(eq(payments.id, first.id), eq(payments.status, 'pending'), lt(payments.leaseUntil, now)))
        .returning()
      if (!taken) throw new Conflict(`an authorization with this key is in progress (payment ${first.id})`, 'PAYMENT_IN_PROGRESS')
      return taken
    })
  }

  /** The outcome is unknown: record it failed, then void by key so no money stays held. */
  private async giveUp(row: PaymentRow, why: string) {
    const failed = await this.markFailed(row, why, false)
    if (failed) await this.voidByKey(failed).catch(() => {})
  }

  private markFailed(row: PaymentRow, why: string, onlyIfLeaseOver: boolean) {
    const { payments } = this.d.t
    const now = new Date()
    return this.d.db.transaction(async (tx) => {
      const [failed] = await tx
        .update(payments)
        .set({ status: 'failed', voidPending: true, updatedAt: now })
        .where(and(eq(payments.id, row.id), eq(payments.status, 'pending'), onlyIfLeaseOver ? lt(payments.leaseUntil, now) : undefined))
        .returning()
      if (failed) await this.record(tx, failed.id, 'failed', failed.amount, why.slice(0, 500))
      return failed
    })
  }

  private async voidByKey(row: PaymentRow) {
    await this.d.provider.run('void', (signal) => this.provider.void({ key: `${row.authorizeKey}:void-unknown`, authorizeKey: row.authorizeKey }, signal), {
      release: true,
    })
    const { payments } = this.d.t
    await this.d.db.transaction(async (tx) => {
      const [done] = await tx
        .update(payments)
        .set({ voidPending: false, updatedAt: new Date() })
        .where(and(eq(payments.id, row.id), eq(payments.voidPending, true)))
        .returning()
      if (done) await this.record(tx, done.id, 'voided', 0, 'voided by key: the authorization outcome was unknown')
    })
  }

  /** A provider call whose refusal is the client's problem (409), and whose failure is a 503. */
  private async ask(what: string, fn: (signal: AbortSignal) => Promise<void>) {
    try {
      await this.d.provider.run(what, fn)
    } catch (error) {
      if (error instanceof ProviderRefusal) throw new Conflict(error.message, 'PAYMENT_PROVIDER_REFUSED')
      throw error
    }
  }

  /** The payment as the key left it, if the key was applied already (another payment with it is a 422). */
  private async replay(paymentId: string, key: string, action: string, amount?: number): Promise<Payment | undefined> {
    const [op] = await this.q.operation(this.d.db.read, { key })
    if (!op) return undefined
    if (op.paymentId !== paymentId || op.action !== action || (amount !== undefined && op.amount !== amount))
      throw new Invalid('this key was used for another payment operation', [{ path: '/key', message: 'key reused' }], 'IDEMPOTENCY_KEY_REUSED')
    return this.get(paymentId)
  }

  /** Records the key and applies the change in one transaction; a key recorded meanwhile applies nothing. */
  private async apply(paymentId: string, key: string, action: string, amount: number, change: (tx: Db) => Promise<PaymentRow | undefined>) {
    const { operations } = this.d.t
    const row = await this.d.db.transaction(async (tx) => {
      const [fresh] = await this.d.db.insertMany(operations, [{ key, paymentId, action, amount, at: new Date() }], { onConflictDoNothing: true, returning: 'key' })
      return fresh ? await change(tx) : undefined
    })
    return this.view(row ?? (await this.require(this.d.db.read, paymentId)))
  }

  private async record(tx: Db, paymentId: string, kind: EventKind, amount: number, detail: string | null): Promise<EventRow> {
    const event = { id: Bun.randomUUIDv7(), paymentId, kind, amount, detail, at: new Date() }
    await this.d.db.insertMany(this.d.t.events, [event])
    return event
  }

  private async require(on: Db | Reader, id: string): Promise<PaymentRow> {
    const [row] = await this.q.byId(on, { id })
    if (!row) throw new NotFound(`no payment ${id}`, 'PAYMENT_NOT_FOUND')
    return row
  }

  /** The answer a settled authorization gives every time its key is used. */
  private async settled(row: PaymentRow, history?: EventRow[]): Promise<Payment> {
    if (row.status === 'declined') throw new PaymentDeclined(`the payment was declined (payment ${row.id})`)
    if (row.status === 'voided' && row.providerRef === null)
      throw new Conflict(`the authorization key was cancelled before it was used (payment ${row.id})`, 'AUTHORIZATION_CANCELLED')
    if (row.status === 'failed') throw new ProviderUnavailable(`the authorization failed: the provider did not answer (payment ${row.id}); it is voided`)
    return this.view(row, history)
  }
}

const change = (row: PaymentRow, amount: number) => ({ paymentId: row.id, reference: row.reference, amount, currency: row.currency })
