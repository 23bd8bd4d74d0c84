/**
 * The cache port: small shared state with expiry (idempotency records, revocations, throttles)
 * and rate limiters on the same store. Memory in one process; Redis across processes.
 */
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { TooManyRequests } from '../../shared/errors'

export interface LimiterOptions {
  /** Budget of points per window. */
  points: number
  /** Window length in seconds. */
  durationSeconds: number
  /** Once the budget is spent, the key stays blocked this long (default: the rest of the window). */
  blockSeconds?: number
}

export interface Cache {
  get<T>(key: string): Promise<T | undefined>
  set(key: string, value: unknown, ttlSeconds?: number): Promise<void>
  /** Sets `key` only when it is absent; true when this call set it. */
  add(key: string, value: unknown, ttlSeconds: number): Promise<boolean>
  del(key: string): Promise<void>
  /** A named rate limiter kept in this store. */
  limiter(name: string, options: LimiterOptions): RateLimiter
  ping(): Promise<void>
  close(): Promise<void>
}

/** rate-limiter-flexible behind a small face: consume or throw 429 with Retry-After. */
export class RateLimiter {
  constructor(private readonly impl: RateLimiterAbstract) {}

  /** Spends `points` for `key`; throws TooManyRequests (429, Retry-After) when the budget is gone. */
  async consume(key: string, points = 1): Promise<void> {
    try {
      await this.impl.consume(key, points)
    } catch (e) {
      if (e instanceof RateLimiterRes) throw new TooManyRequests(e.msBeforeNext / 1000)
      throw e
    }
  }

  /** Seconds until `key` may try again; 0 when its budget is not spent. Counts nothing. */
  async blockedFor(key: string): Promise<number> {
    const res = await this.impl.get(key)
    return res && res.remainingPoints <= 0 ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0
  }

  /** Spends `points` for `key` without throwing; returns true when the budget is now spent. */
  async penalize(key: string, points = 1): Promise<boolean> {
    const res = await this.impl.penalty(key, points)
    return res.remainingPoints <= 0
  }

  reset(key: string): Promise<boolean> {
    return this.impl.delete(key)
  }
}
