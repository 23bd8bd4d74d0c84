/**
 * Several processes: @socket.io/redis-streams-adapter. Chosen over @socket.io/redis-adapter
 * because it supports connection state recovery (sessions and missed packets are read back from
 * the stream, so a client recovers even on another process) and resumes the stream after a Redis
 * blip instead of losing what was published meanwhile (Pub/Sub would). It takes our ioredis client.
 * Every key and channel starts with REDIS_PREFIX, so deployments (and tests) can share one Redis.
 */
import { createAdapter } from '@socket.io/redis-streams-adapter'
import Redis from 'ioredis'
import type { Logger } from 'pino'
import type { RealtimeAdapter } from './port'

export interface RedisAdapterOptions {
  url: string
  prefix: string
  /** Entries kept in the stream: how far back a reconnecting client can recover. */
  maxLen: number
}

export function redisAdapter(options: RedisAdapterOptions, log: Logger): RealtimeAdapter {
  const redis = new Redis(options.url, { maxRetriesPerRequest: 2 })
  let lastError = ''
  redis.on('error', (error: Error) => {
    if (error.message !== lastError) log.warn({ err: error }, `realtime redis: ${(lastError = error.message)}`)
  })
  redis.on('ready', () => (lastError = ''))
  const adapter = createAdapter(redis, {
    streamName: `${options.prefix}socket.io`,
    channelPrefix: `${options.prefix}socket.io`,
    sessionKeyPrefix: `${options.prefix}socket.io:session:`,
    maxLen: options.maxLen,
    // The readers block this long per XREAD; shorter lets a stopping process let go sooner.
    blockTimeInMs: 1_000,
  })
  return {
    kind: 'redis',
    adapter,
    async close() {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
