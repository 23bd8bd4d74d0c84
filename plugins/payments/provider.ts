/**
 * What a payment provider does, and the resilience every call to one gets: a timeout and a circuit
 * breaker per provider (cockatiel). Every request carries the caller's idempotency key, which a
 * provider honours: the same key gets the same answer, so a retry never moves money twice.
 */
import { BrokenCircuitError, ConsecutiveBreaker, TaskCancelledError, TimeoutStrategy, circuitBreaker, handleWhen, timeout, wrap } from 'cockatiel'
import { Unavailable } from '../../shared/errors'

export type AuthorizeAnswer = { approved: true; authorizationId: string } | { approved: false; reason: string }

export interface PaymentProvider {
  readonly id: string
  /** Holds `amount` on the card behind `token`. */
  authorize(request: { key: string; amount: number; currency: string; token: string }, signal: AbortSignal): Promise<AuthorizeAnswer>
  capture(request: { key: string; authorizationId: string; amount: number }, signal: AbortSignal): Promise<void>
  /** Lets go of the authorization made with `authorizeKey`; one not made yet never will be (the key is spent). */
  void(request: { key: string; authorizeKey: string }, signal: AbortSignal): Promise<void>
  refund(request: { key: string; authorizationId: string; amount: number }, signal: AbortSignal): Promise<void>
}

/** The provider failed to answer (its own error); the outcome of the request is unknown. */
export class ProviderError extends Error {}

/** The provider answered and said no to this request (unknown authorization, refund above the capture, …). */
export class ProviderRefusal extends Error {}

export class ProviderUnavailable extends Unavailable {
  constructor(message: string) {
    super(message, 'PAYMENT_PROVIDER_UNAVAILABLE')
  }
}

export interface ResilienceSettings {
  timeoutMs: number
  breakerFailures: number
  halfOpenMs: number
}

/** Runs calls to one provider under its timeout and circuit breaker, turning failures into ProviderUnavailable. */
export class GuardedProvider {
  private readonly policy
  private readonly bounded

  constructor(
    readonly provider: PaymentProvider,
    settings: ResilienceSettings,
  ) {
    // A refusal is an answer, not a sign of a sick provider: only errors and timeouts open the circuit.
    const breaker = circuitBreaker(
      handleWhen((e) => !(e instanceof ProviderRefusal)),
      { halfOpenAfter: settings.halfOpenMs, breaker: new ConsecutiveBreaker(settings.breakerFailures) },
    )
    this.bounded = timeout(settings.timeoutMs, TimeoutStrategy.Aggressive)
    this.policy = wrap(breaker, this.bounded)
  }

  /**
   * `release: true` is for letting money go (voiding an unknown outcome): it is tried even while the
   * circuit is open and is not counted by the breaker, because a held amount matters more than speed.
   */
  async run<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, options: { release?: boolean } = {}): Promise<T> {
    try {
      return await (options.release ? this.bounded : this.policy).execute(({ signal }) => fn(signal))
    } catch (error) {
      if (error instanceof ProviderRefusal) throw error
      const id = this.provider.id
      if (error instanceof BrokenCircuitError) throw new ProviderUnavailable(`payment provider ${id} is failing; ${what} refused until it answers again`)
      if (error instanceof TaskCancelledError) throw new ProviderUnavailable(`payment provider ${id} did not answer ${what} in time`)
      throw new ProviderUnavailable(`payment provider ${id} failed on ${what}: ${(error as Error).message}`)
    }
  }
}
