import Redis from 'ioredis'
import type { Logger } from 'pino'
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible'
import { RateLimiter, type Cache } from './port'

/** The Redis cache; every key starts with `prefix`, so deployments can share one Redis. */
export function redisCache(url: string, prefix: string, log?: Logger): Cache {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false })
  const k = (key: string) => prefix + key
  // ioredis reconnects by itself; failed commands surface to their callers (and /health/ready).
  let lastError = ''
  redis.on('error', (error: Error) => {
    if (error.message !== lastError) log?.warn({ err: error }, `redis: ${(lastError = error.message)}`)
  })
  redis.on('ready', () => (lastError = ''))

  return {
    async get<T>(key: string) {
      const raw = await redis.get(k(key))
      return raw === null ? undefined : (JSON.parse(raw) as T)
    },
    async set(key, value, ttlSeconds) {
      if (ttlSeconds) await redis.set(k(key), JSON.stringify(value), 'EX', ttlSeconds)
      else await redis.set(k(key), JSON.stringify(value))
    },
    async add(key, value, ttlSeconds) {
      return (await redis.set(k(key), JSON.stringify(value), 'EX', ttlSeconds, 'NX')) === 'OK'
    },
    async del(key) {
      await redis.del(k(key))
    },
    limiter(name, o) {
      const options = { keyPrefix: k(`rl:${name}`), points: o.points, duration: o.durationSeconds, blockDuration: o.blockSeconds }
      // While Redis is unreachable each process limits on its own rather than letting everything through.
      const insuranceLimiter = new RateLimiterMemory(options)
      return new RateLimiter(new RateLimiterRedis({ ...options, storeClient: redis, rejectIfRedisNotReady: true, insuranceLimiter }))
    },
    async ping() {
      await redis.ping()
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
