import { RateLimiterMemory } from 'rate-limiter-flexible'
import { RateLimiter, type Cache } from './port'

/** The in-process cache: a Map with expiry, swept once a minute. */
export function memoryCache(): Cache {
  const entries = new Map<string, { value: unknown; expires: number }>()
  const live = (key: string) => {
    const e = entries.get(key)
    if (e && e.expires <= Date.now()) {
      entries.delete(key)
      return undefined
    }
    return e
  }
  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [k, e] of entries) if (e.expires <= now) entries.delete(k)
  }, 60_000)
  sweep.unref()

  return {
    async get<T>(key: string) {
      return live(key)?.value as T | undefined
    },
    async set(key, value, ttlSeconds) {
      entries.set(key, { value, expires: ttlSeconds ? Date.now() + ttlSeconds * 1000 : Infinity })
    },
    async add(key, value, ttlSeconds) {
      if (live(key)) return false
      entries.set(key, { value, expires: Date.now() + ttlSeconds * 1000 })
      return true
    },
    async del(key) {
      entries.delete(key)
    },
    limiter(name, o) {
      return new RateLimiter(
        new RateLimiterMemory({ keyPrefix: name, points: o.points, duration: o.durationSeconds, blockDuration: o.blockSeconds }),
      )
    },
    async ping() {},
    async close() {
      clearInterval(sweep)
      entries.clear()
    },
  }
}
