/**
 * Picking an owner of a plugin: round-robin over the registry's ready owners, with a cockatiel
 * circuit breaker per owner URL so a dead one fails fast and is probed again half-open. Remote
 * calls and the gateway share it, so both treat replicas and failures the same way.
 */
import { BrokenCircuitError, ConsecutiveBreaker, circuitBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel'
import type { Logger } from 'pino'
import { Unavailable } from '../../shared/errors'
import type { Registry } from '../registry'

export interface OwnerCircuitsOptions {
  /** Consecutive failures that open one owner's circuit. */
  breakerFailures: number
  /** How long an open circuit waits before a probe. */
  halfOpenMs: number
  /** Which errors of an attempt count as the owner failing. */
  isFailure: (error: unknown) => boolean
  /** Which errors mean "nothing ran there": the next owner is tried at once. */
  tryNext?: (error: unknown) => boolean
  /** Told when an owner's circuit opens (true) or closes again (false). */
  onCircuit?: (owner: string, open: boolean) => void
  log?: Logger
}

export class OwnerCircuits {
  private readonly breakers = new Map<string, CircuitBreakerPolicy>()
  private turn = 0

  constructor(
    private readonly registry: Registry,
    private readonly o: OwnerCircuitsOptions,
  ) {}

  /** Runs `attempt` against one owner of `plugin`, the next one while circuits are open; none left is Unavailable at once. */
  async run<T>(plugin: string, attempt: (ownerUrl: string) => Promise<T>): Promise<T> {
    const owners = this.registry.owners(plugin)
    if (!owners.length) throw new Unavailable(`no live process hosts ${plugin}`)
    const first = this.turn++
    let last: unknown
    for (let i = 0; i < owners.length; i++) {
      const url = owners[(first + i) % owners.length]
      try {
        return await this.breakerFor(url).execute(() => attempt(url))
      } catch (error) {
        if (!(error instanceof BrokenCircuitError) && !this.o.tryNext?.(error)) throw error
        if (!(error instanceof BrokenCircuitError)) last = error
      }
    }
    if (last) throw last
    throw new Unavailable(`every process hosting ${plugin} is failing; requests fail fast until one answers again`)
  }

  private breakerFor(url: string) {
    let breaker = this.breakers.get(url)
    if (!breaker) {
      breaker = circuitBreaker(handleWhen(this.o.isFailure), { halfOpenAfter: this.o.halfOpenMs, breaker: new ConsecutiveBreaker(this.o.breakerFailures) })
      breaker.onBreak(() => {
        this.o.onCircuit?.(url, true)
        this.o.log?.warn({ owner: url }, 'circuit opened: requests to this owner fail fast')
      })
      breaker.onReset(() => {
        this.o.onCircuit?.(url, false)
        this.o.log?.info({ owner: url }, 'circuit closed: the owner answers again')
      })
      this.breakers.set(url, breaker)
    }
    return breaker
  }
}
