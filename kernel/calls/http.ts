/**
 * Calls to plugins hosted elsewhere: a POST to the internal endpoint of a live owner found in the
 * registry (round-robin across replicas; Bun's fetch keeps the connections alive). The request
 * carries a service token, the time left before the deadline, the W3C traceparent and the
 * idempotency key. An error answer becomes the same AppError kind a local call would have thrown.
 *
 * Resilience is two cockatiel wrappers: a retry (idempotent actions only, on a transport failure
 * or a 503, within the deadline), and a circuit breaker per owner URL so a dead owner fails fast
 * and is probed again half-open. A request that surely never reached a handler (connection refused,
 * or the owner said NOT_READY / NOT_HOSTED) may go to another owner whatever the action.
 */
import { ExponentialBackoff, handleWhen, retry, type RetryPolicy } from 'cockatiel'
import type { Logger } from 'pino'
import { actions } from '../../shared/contracts'
import {
  AppError,
  BadRequest,
  Conflict,
  type ErrorDetail,
  Forbidden,
  Invalid,
  NotFound,
  TooManyRequests,
  Unavailable,
} from '../../shared/errors'
import type { PluginMetrics } from '../http/metrics'
import type { Registry } from '../registry'
import { OwnerCircuits } from './owners'
import type { CallMeta, CallTransport } from './port'
import type { ServiceTokens } from './service-token'

export const CALLS_PATH = '/internal/v1/calls'
/** Milliseconds left before the caller's deadline (relative, so the hosts' clocks need not agree). */
export const TIMEOUT_HEADER = 'x-call-timeout-ms'

/** The owner did not run the action (refused at the door): any call may try another owner. */
export class Undelivered extends Unavailable {}
/** The request may have reached the owner: only idempotent calls may try again. */
class Unreachable extends Unavailable {}
/** The owner itself answered 503 (something behind it is down): retried like Unreachable, but the owner is alive, so its circuit stays closed. */
class OwnerAnswered503 extends Unavailable {}

export interface HttpTransportOptions {
  /** Extra attempts for idempotent actions. */
  retries: number
  /** Consecutive failures that open one owner's circuit. */
  breakerFailures: number
  /** How long an open circuit waits before a probe. */
  halfOpenMs: number
  log?: Logger
  /** Where the transport counts its calls, retries and open circuits (prefix `calls_`). */
  metrics?: PluginMetrics
}

export class HttpTransport implements CallTransport {
  private readonly owners: OwnerCircuits
  private readonly retries = new Map<string, RetryPolicy>()
  private readonly counted

  constructor(
    private readonly registry: Registry,
    private readonly tokens: ServiceTokens,
    private readonly o: HttpTransportOptions,
  ) {
    this.counted = o.metrics && {
      calls: o.metrics.counter('remote_total', 'Remote calls made, by action and outcome (ok or the error code)', ['action', 'outcome']),
      retries: o.metrics.counter('remote_retries_total', 'Remote call attempts repeated, by action', ['action']),
      open: o.metrics.gauge('circuit_open', 'Whether the circuit to an owner URL is open (1) or not (0)', ['owner']),
    }
    this.owners = new OwnerCircuits(registry, {
      breakerFailures: o.breakerFailures,
      halfOpenMs: o.halfOpenMs,
      isFailure: (e) => e instanceof Unreachable || e instanceof Undelivered,
      onCircuit: (owner, open) => this.counted?.open.set({ owner }, open ? 1 : 0),
      log: o.log,
    })
  }

  reaches(action: string) {
    return this.registry.owners(pluginOf(action)).length > 0
  }

  async invoke(action: string, input: unknown, meta: CallMeta): Promise<unknown> {
    try {
      const result = await this.retryFor(action).execute(() => this.toAnOwner(action, input, meta), meta.signal)
      this.counted?.calls.inc({ action, outcome: 'ok' })
      return result
    } catch (error) {
      this.counted?.calls.inc({ action, outcome: (error as AppError).code ?? 'ERROR' })
      throw error
    }
  }

  /** Idempotent actions go again after any owner failure; the others only when nothing ran. */
  private retryFor(action: string) {
    let policy = this.retries.get(action)
    if (!policy) {
      const idempotent = (actions as Record<string, { idempotent?: boolean }>)[action]?.idempotent === true
      const again = (e: unknown) => e instanceof Undelivered || (idempotent && (e instanceof Unreachable || e instanceof OwnerAnswered503))
      policy = retry(handleWhen(again), { maxAttempts: this.o.retries, backoff: new ExponentialBackoff({ initialDelay: 20, maxDelay: 500 }) })
      policy.onRetry(() => this.counted?.retries.inc({ action }))
      this.retries.set(action, policy)
    }
    return policy
  }

  /** Round-robin over the owners, skipping those whose circuit is open; none left is Unavailable at once. */
  private toAnOwner(action: string, input: unknown, meta: CallMeta) {
    return this.owners.run(pluginOf(action), (url) => this.send(url, action, input, meta))
  }

  private async send(url: string, action: string, input: unknown, meta: CallMeta): Promise<unknown> {
    const left = meta.deadline - Date.now()
    if (left <= 0) throw new Unavailable(`${action}: the deadline passed`, 'CALL_TIMEOUT')
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      authorization: `Bearer ${await this.tokens.tokenFor(meta.caller)}`,
      [TIMEOUT_HEADER]: String(left),
    }
    if (meta.traceparent) headers.traceparent = meta.traceparent
    if (meta.idempotencyKey) headers['idempotency-key'] = meta.idempotencyKey
    let status: number
    let text: string
    let retryAfter: string | null
    try {
      const res = await fetch(`${url}${CALLS_PATH}/${action}`, { method: 'POST', headers, body: JSON.stringify(input ?? null), signal: meta.signal })
      status = res.status
      retryAfter = res.headers.get('retry-after')
      text = await res.text()
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'ECONNREFUSED' || code === 'ConnectionRefused') throw new Undelivered(`${action}: nothing listens at ${url}`)
      if (meta.signal?.aborted) throw new Unreachable(`${action}: ${url} did not answer in time`, 'CALL_TIMEOUT')
      throw new Unreachable(`${action}: the call to ${url} failed (${(error as Error).message})`)
    }
    let body: any
    try {
      body = JSON.parse(text)
    } catch {
      throw new Unreachable(`${action}: ${url} answered ${status} without JSON`)
    }
    if (status === 200) return body?.result
    const e = body?.error ?? {}
    if (status === 401) {
      this.o.log?.error({ owner: url, action }, 'the owner refused our service token: is INTERNAL_SECRET (or JWT_SECRET) the same in every process?')
      throw new Unavailable(`${action}: the owner refused this process`, 'CALL_REFUSED')
    }
    throw rebuild(status, String(e.code ?? 'INTERNAL'), String(e.message ?? `${action} failed`), e.details, retryAfter)
  }
}

const pluginOf = (action: string) => action.slice(0, action.indexOf('.'))

/** An error envelope from the owner as the AppError kind the action threw there. */
function rebuild(status: number, code: string, message: string, details: ErrorDetail[] | undefined, retryAfter: string | null): Error {
  switch (status) {
    case 400:
      return new BadRequest(message, code, details)
    case 403:
      return new Forbidden(message, code)
    case 404:
      return new NotFound(message, code)
    case 409:
      return new Conflict(message, code, details)
    case 422:
      return new Invalid(message, details, code)
    case 429:
      return new TooManyRequests(Number(retryAfter ?? 1), message)
    case 503:
      return code === 'NOT_READY' || code === 'NOT_HOSTED' ? new Undelivered(message, code) : new OwnerAnswered503(message, code)
  }
  // A failure the owner did not foresee stays one here: an internal error, not a kind.
  if (status >= 500) return new Error(`${message} (${code}, from the owner)`)
  return new AppError(status, code, message, details)
}
