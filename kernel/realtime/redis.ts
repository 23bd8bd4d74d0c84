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
import type { Namespace } from 'socket.io'
import type { ClusterAdapter } from 'socket.io-adapter'
import type { RealtimeAdapter } from './port'

export interface RedisAdapterOptions {
  url: string
  prefix: string
  /** Entries kept in the stream: how far back a reconnecting client can recover. */
  maxLen: number
}

export function redisAdapter(options: RedisAdapterOptions, log: Logger, recovers: (namespace: string) => boolean): RealtimeAdapter {
  const redis = new Redis(options.url, { maxRetriesPerRequest: 2 })
  let lastError = ''
  redis.on('error', (error: Error) => {
    if (error.message !== lastError) log.warn({ err: error }, `realtime redis: ${(lastError = error.message)}`)
  })
  redis.on('ready', () => (lastError = ''))
  const streams = createAdapter(redis, {
    streamName: `${options.prefix}socket.io`,
    channelPrefix: `${options.prefix}socket.io`,
    sessionKeyPrefix: `${options.prefix}socket.io:session:`,
    maxLen: options.maxLen,
    // The readers block this long per XREAD; shorter lets a stopping process let go sooner.
    blockTimeInMs: 1_000,
  })
  // Socket.IO runs `new adapter(nsp)` per namespace. The stream carries every emit between processes
  // either way; a namespace without recovery just keeps no sessions, so a reconnect starts afresh.
  function adapter(nsp: Namespace) {
    const a = new (streams as unknown as new (nsp: Namespace) => ClusterAdapter)(nsp)
    if (!recovers(nsp.name)) Object.assign(a, { persistSession() {}, restoreSession: () => Promise.resolve(null) })
    return a
  }
  return {
    kind: 'redis',
    adapter,
    async close() {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
