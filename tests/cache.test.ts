/** The cache port's contract, on the active adapter (memory by default, Redis in the real-services run). */
import { afterAll, describe, expect, test } from 'bun:test'
import { type Cache, openCache } from '../kernel/cache'
import { TooManyRequests } from '../shared/errors'
import { isolatedStore, services, variant } from './harness'

const store = isolatedStore()
const cache: Cache = openCache(services.redisUrl, store.env.REDIS_PREFIX)
afterAll(async () => {
  await cache.close()
  await store.cleanup()
})

describe(`cache port (${variant === 'embedded' ? 'memory' : 'redis'})`, () => {
  test('a value set is read back as it was written, and deleted on request', async () => {
    await cache.set('k1', { a: 1, list: ['x'], nested: { ok: true } })
    expect(await cache.get('k1')).toEqual({ a: 1, list: ['x'], nested: { ok: true } })
    await cache.del('k1')
    expect(await cache.get('k1')).toBeUndefined()
  })

  test('a value with a time to live disappears after it', async () => {
    await cache.set('short', 'v', 1)
    expect(await cache.get<string>('short')).toBe('v')
    await Bun.sleep(1100)
    expect(await cache.get('short')).toBeUndefined()
  })

  test('add sets a key only when it is absent, so exactly one of many racers wins', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => cache.add('race', i, 60)))
    expect(results.filter(Boolean)).toHaveLength(1)
    expect(await cache.get<number>('race')).toBe(results.indexOf(true))
  })

  test('a limiter lets the budget through, then throws 429 with a Retry-After', async () => {
    const limiter = cache.limiter('contract', { points: 3, durationSeconds: 60 })
    for (let i = 0; i < 3; i++) await limiter.consume('client-a')
    const refused = await limiter.consume('client-a').catch((e) => e)
    expect(refused).toBeInstanceOf(TooManyRequests)
    expect(refused.status).toBe(429)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    // Budgets are per key.
    await limiter.consume('client-b')
  })

  test('penalties count toward the budget, blockedFor reports the wait, and reset clears it', async () => {
    const limiter = cache.limiter('penalty', { points: 2, durationSeconds: 60, blockSeconds: 60 })
    expect(await limiter.blockedFor('who')).toBe(0)
    expect(await limiter.penalize('who')).toBe(false)
    expect(await limiter.penalize('who')).toBe(true)
    expect(await limiter.blockedFor('who')).toBeGreaterThan(0)
    await limiter.reset('who')
    expect(await limiter.blockedFor('who')).toBe(0)
  })

  // The memory adapter is one process's store by design, so this holds for Redis only.
  test.if(Boolean(services.redisUrl))('two processes on one Redis share their limits', async () => {
    const other = openCache(services.redisUrl, store.env.REDIS_PREFIX)
    try {
      await other.ping()
      const a = cache.limiter('shared', { points: 2, durationSeconds: 60 })
      const b = other.limiter('shared', { points: 2, durationSeconds: 60 })
      await a.consume('k')
      await b.consume('k')
      expect(await a.consume('k').catch((e) => e.status)).toBe(429)
    } finally {
      await other.close()
    }
  })
})
