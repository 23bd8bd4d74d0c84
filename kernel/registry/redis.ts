import Redis from 'ioredis'
import type { Logger } from 'pino'
import { type Instance, type Registry, readyOwners } from './port'

export interface RedisRegistryOptions {
  url: string
  /** REDIS_PREFIX: every key starts with it. */
  prefix: string
  /** How often this process renews its entry and re-reads the others'. */
  heartbeatMs: number
  /** How long an entry outlives its last renewal (a process killed silently disappears after it). */
  ttlMs: number
  log?: Logger
}

/**
 * Each process writes `<prefix>registry:instance:<id>` (its Instance as JSON, expiring after the
 * TTL) and adds its id to the set `<prefix>registry:instances`. Every heartbeat it renews its key
 * and re-reads all entries; ids whose key expired are dropped from the set by whoever sees them
 * first. Expiry is Redis's own clock, so the processes' clocks do not matter.
 */
export class RedisRegistry implements Registry {
  private readonly redis: Redis
  private readonly setKey: string
  private self: Instance | undefined
  private view: Instance[] = []
  private timer: ReturnType<typeof setInterval> | undefined
  private lastError = ''
  /** The heartbeat in flight, so a withdrawal never races a renewal that would bring the entry back. */
  private beating: Promise<void> | undefined

  constructor(private readonly o: RedisRegistryOptions) {
    this.redis = new Redis(o.url, { maxRetriesPerRequest: 1, enableOfflineQueue: true })
    this.redis.on('error', () => {}) // reported per heartbeat below
    this.setKey = `${o.prefix}registry:instances`
  }

  private key(id: string) {
    return `${this.o.prefix}registry:instance:${id}`
  }

  owners(plugin: string) {
    return readyOwners(this.view, plugin)
  }

  instances() {
    return this.view
  }

  async join(self: Instance) {
    this.self = { ...self }
    await this.heartbeat()
    this.timer = setInterval(() => void this.heartbeat().catch(() => {}), this.o.heartbeatMs)
    this.timer.unref?.()
  }

  async setReady(ready: boolean) {
    if (!this.self) return
    this.self.ready = ready
    await this.heartbeat()
  }

  async withdraw() {
    const self = this.self
    if (!self) return
    this.self = undefined
    await this.beating?.catch(() => {})
    await this.redis.multi().del(this.key(self.id)).srem(this.setKey, self.id).exec()
    this.view = this.view.filter((i) => i.id !== self.id)
  }

  async close() {
    clearInterval(this.timer)
    await this.redis.quit().catch(() => this.redis.disconnect())
  }

  /** Renews this process's entry (while joined), then refreshes the view of everyone. */
  private heartbeat(): Promise<void> {
    const run = (this.beating ?? Promise.resolve()).catch(() => {}).then(() => this.renew())
    this.beating = run
    return run
  }

  private async renew() {
    try {
      if (this.self)
        await this.redis.multi().set(this.key(this.self.id), JSON.stringify(this.self), 'PX', this.o.ttlMs).sadd(this.setKey, this.self.id).exec()
      const ids = await this.redis.smembers(this.setKey)
      const raw = ids.length ? await this.redis.mget(ids.map((id) => this.key(id))) : []
      const gone = ids.filter((_, i) => raw[i] === null)
      if (gone.length) await this.redis.srem(this.setKey, ...gone)
      this.view = raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as Instance)
      if (this.lastError) this.o.log?.info('registry: Redis answers again')
      this.lastError = ''
    } catch (error) {
      // The last view is kept: owners that died meanwhile are caught by the callers' breakers.
      const message = (error as Error).message
      if (message !== this.lastError) this.o.log?.warn({ err: error }, `registry: ${(this.lastError = message)}`)
      throw error
    }
  }
}
