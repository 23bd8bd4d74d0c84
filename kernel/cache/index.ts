import { memoryCache } from './memory'
import type { Cache } from './port'
import { redisCache } from './redis'

export function openCache(redisUrl: string | undefined, prefix: string): Cache {
  return redisUrl ? redisCache(redisUrl, prefix) : memoryCache()
}

export { RateLimiter, type Cache, type LimiterOptions } from './port'
