import type { Logger } from 'pino'
import { memoryCache } from './memory'
import type { Cache } from './port'
import { redisCache } from './redis'

export function openCache(redisUrl: string | undefined, prefix: string, log?: Logger): Cache {
  return redisUrl ? redisCache(redisUrl, prefix, log) : memoryCache()
}

export { RateLimiter, type Cache, type LimiterOptions } from './port'
