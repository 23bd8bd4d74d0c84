/**
 * The `sandbox` provider, for development and tests: it behaves like a real provider and keeps its
 * own books (in its tables, as a real one would on its side), by the caller's keys.
 * Tokens: `tok_ok` approves, `tok_declined` (and any unknown token) declines, `tok_slow` answers
 * after `slowMs` (10 s), `tok_error` fails with a provider error.
 */
import { and, eq, sql } from 'drizzle-orm'
import type { Database, Params, Tables } from '../../kernel/db'
import { type AuthorizeAnswer, type PaymentProvider, ProviderError, ProviderRefusal } from './provider'
import type { PaymentsSchema } from './schema'

type T = Tables<PaymentsSchema>

export class SandboxProvider implements PaymentProvider {
  readonly id = 'sandbox'
  /** Slow answers still pending, so stop() can end them before the database closes. */
  private readonly sleeping = new Set<() => void>()
  /** The statements of every authorization and capture, built once. */
  private readonly q

  constructor(
    private readonly db: Database,
    private readonly t: T,
    private readonly slowMs: number,
  ) {
    const { sandboxAuthorizations: a, sandboxRequests: r } = t
    this.q = {
      authorization: db.prepare('sandbox.authorization', (q, p: Params<{ key: string }>) => q.select().from(a).where(eq(a.key, p('key')))),
      request: db.prepare('sandbox.request', (q, p: Params<{ key: string }>) => q.select().from(r).where(eq(r.key, p('key')))),
      capture: db.prepare('sandbox.capture', (q, p: Params<{ id: string; amount: number }>) =>
        q
          .update(a)
          .set({ status: 'captured', captured: p('amount', a.captured) })
          .where(and(eq(a.id, p('id')), eq(a.status, 'authorized'), sql`${a.amount} >= ${p('amount', a.amount)}`))
          .returning({ id: a.id }),
      ),
    }
  }

  async authorize(request: { key: string; amount: number; currency: string; token: string }): Promise<AuthorizeAnswer> {
    // A key seen before gets its answer; an immediate token finds that out from the insert's conflict (one statement, not two).
    const immediate = request.token !== 'tok_error' && request.token !== 'tok_slow'
    const known = immediate ? undefined : await this.authorization(request.key)
    if (known) return this.answerFor(known)
    if (request.token === 'tok_error') throw new ProviderError('sandbox: simulated processor error')
    // Like a real provider, a slow answer is not abandoned because the caller stopped waiting.
    if (request.token === 'tok_slow') await this.sleep(this.slowMs)
    const status = request.token === 'tok_ok' || request.token === 'tok_slow' ? 'authorized' : 'declined'
    const { sandboxAuthorizations: a } = this.t
    const made = { id: `sbx_${Bun.randomUUIDv7()}`, key: request.key, status, amount: request.amount, createdAt: new Date() }
    // A void that came first spent the key: that tombstone stays and is the answer.
    const [inserted] = await this.db.insertMany(a, [made], { onConflictDoNothing: true, returning: 'id' })
    return this.answerFor(inserted ? made : (await this.authorization(request.key))!)
  }

  capture(request: { key: string; authorizationId: string; amount: number }) {
    return this.once(request.key, async (tx) => {
      const [row] = await this.q.capture(tx, { id: request.authorizationId, amount: request.amount })
      return row ? null : 'no capturable authorization with this id'
    })
  }

  void(request: { key: string; authorizeKey: string }) {
    return this.once(request.key, async (tx) => {
      const { sandboxAuthorizations: a } = this.t
      const [row] = await tx.update(a).set({ status: 'voided' }).where(and(eq(a.key, request.authorizeKey), eq(a.status, 'authorized'))).returning()
      if (row) return null
      const [current] = await tx.select().from(a).where(eq(a.key, request.authorizeKey))
      if (!current) {
        await tx.insert(a).values({ id: `sbx_${Bun.randomUUIDv7()}`, key: request.authorizeKey, status: 'voided', amount: 0, createdAt: new Date() })
        return null
      }
      return current.status === 'captured' ? 'the authorization was captured; refund it instead' : null
    })
  }

  refund(request: { key: string; authorizationId: string; amount: number }) {
    return this.once(request.key, async (tx) => {
      const { sandboxAuthorizations: a } = this.t
      const [row] = await tx
        .update(a)
        .set({ refunded: sql`${a.refunded} + ${request.amount}` })
        .where(and(eq(a.id, request.authorizationId), eq(a.status, 'captured'), sql`${a.captured} - ${a.refunded} >= ${request.amount}`))
        .returning()
      return row ? null : 'refund exceeds what was captured'
    })
  }

  /** Ends slow answers in flight (they fail) so nothing writes after the plugin stopped. */
  stop() {
    for (const wake of this.sleeping) wake()
  }

  private sleep(ms: number) {
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer)
        this.sleeping.delete(wake)
        reject(new ProviderError('sandbox: stopped'))
      }
      const timer = setTimeout(() => {
        this.sleeping.delete(wake)
        resolve()
      }, ms)
      this.sleeping.add(wake)
    })
  }

  private async authorization(key: string) {
    const [row] = await this.q.authorization(this.db.read, { key })
    return row
  }

  private answerFor(row: { id: string; status: string }): AuthorizeAnswer {
    if (row.status === 'declined') return { approved: false, reason: 'the card was declined' }
    return row.status === 'voided' ? { approved: false, reason: 'this authorization key was voided' } : { approved: true, authorizationId: row.id }
  }

  /** Runs a request once per key; the same key later gets the recorded answer (a refusal too). */
  private async once(key: string, apply: (tx: Parameters<Parameters<Database['transaction']>[0]>[0]) => Promise<string | null>) {
    const { sandboxRequests: r } = this.t
    const answer = await this.db.transaction(async (tx) => {
      const [seen] = await this.q.request(tx, { key })
      if (seen) return seen.answer
      const refusal = await apply(tx)
      const recorded = refusal ? { ok: false, error: refusal } : { ok: true }
      await this.db.insertMany(r, [{ key, answer: recorded, at: new Date() }])
      return recorded
    })
    if (!answer.ok) throw new ProviderRefusal(`sandbox: ${answer.error}`)
  }
}
