/**
 * The payments plugin's tables. Amounts are integers in minor units. Every action is idempotent by
 * its key: the authorization key is unique on the payment, and capture / void / refund keys are
 * unique in `operations`, so a retry after a crash has one effect.
 */
import { table } from '../../kernel/db/schema'

export const schema = {
  payments: table(
    'payments_payments',
    (c) => ({
      id: c.id(),
      reference: c.text('reference').notNull(),
      provider: c.text('provider').notNull(),
      /** The key of the authorization; also sent to the provider, which voids by it. */
      authorizeKey: c.text('authorize_key').notNull(),
      /** pending → authorized | declined | failed; authorized → captured | voided; captured → (partially_)refunded */
      status: c.text('status').notNull(),
      amount: c.bigint('amount').notNull(),
      currency: c.text('currency').notNull(),
      captured: c.bigint('captured').notNull().default(0),
      refunded: c.bigint('refunded').notNull().default(0),
      /** The provider's id of the authorization, once it answered. */
      providerRef: c.text('provider_ref'),
      /** A pending payment is being asked about until then; past it, whoever comes next takes over. */
      leaseUntil: c.timestamp('lease_until').notNull(),
      /** The outcome is unknown (timeout, provider error): the provider must still be told to void it by key. */
      voidPending: c.boolean('void_pending').notNull().default(false),
      createdAt: c.timestamp('created_at').notNull(),
      updatedAt: c.timestamp('updated_at').notNull(),
    }),
    (c) => (t) => [
      c.uniqueIndex('payments_payments_authorize_key').on(t.authorizeKey),
      c.index('payments_payments_reference').on(t.reference),
      c.index('payments_payments_void_pending').on(t.voidPending, t.status),
    ],
  ),
  /** The history GET /payments/:id shows: authorized, declined, failed, captured, voided, refunded. */
  events: table(
    'payments_events',
    (c) => ({
      id: c.id(),
      paymentId: c.text('payment_id').notNull(),
      kind: c.text('kind').notNull(),
      amount: c.bigint('amount').notNull(),
      detail: c.text('detail'),
      at: c.timestamp('at').notNull(),
    }),
    (c) => (t) => [c.index('payments_events_payment').on(t.paymentId, t.id)],
  ),
  /** Capture, void and refund keys already applied: the same key again returns the payment unchanged. */
  operations: table(
    'payments_operations',
    (c) => ({
      key: c.text('key').primaryKey(),
      paymentId: c.text('payment_id').notNull(),
      action: c.text('action').notNull(),
      amount: c.bigint('amount').notNull(),
      at: c.timestamp('at').notNull(),
    }),
  ),
  /**
   * The sandbox provider's own books, as a real provider keeps them on its side: authorizations by
   * the caller's key, and every answered request by its key (the same key gets the same answer).
   */
  sandboxAuthorizations: table(
    'payments_sandbox_authorizations',
    (c) => ({
      id: c.id(),
      key: c.text('key').notNull(),
      /** authorized | captured | voided | declined */
      status: c.text('status').notNull(),
      amount: c.bigint('amount').notNull(),
      captured: c.bigint('captured').notNull().default(0),
      refunded: c.bigint('refunded').notNull().default(0),
      createdAt: c.timestamp('created_at').notNull(),
    }),
    (c) => (t) => [c.uniqueIndex('payments_sandbox_authorizations_key').on(t.key)],
  ),
  sandboxRequests: table('payments_sandbox_requests', (c) => ({
    key: c.text('key').primaryKey(),
    answer: c.json<{ ok: boolean; error?: string }>('answer').notNull(),
    at: c.timestamp('at').notNull(),
  })),
}

export type PaymentsSchema = typeof schema
