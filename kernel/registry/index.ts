import { hostname } from 'node:os'
import type { Logger } from 'pino'
import type { KernelConfig } from '../config'
import { LocalRegistry } from './local'
import type { Registry } from './port'
import { RedisRegistry } from './redis'
import { StaticRegistry } from './static'

/** The adapter the configuration picks: static routes, else Redis, else this process alone. */
export function openRegistry(config: KernelConfig, log?: Logger): Registry {
  const kind = config.REGISTRY === 'auto' ? (config.PLUGIN_ROUTES ? 'static' : config.REDIS_URL ? 'redis' : 'local') : config.REGISTRY
  if (kind === 'static') return new StaticRegistry(config.PLUGIN_ROUTES ?? {})
  if (kind === 'redis') {
    if (!config.REDIS_URL) throw new Error('REGISTRY=redis needs REDIS_URL')
    return new RedisRegistry({ url: config.REDIS_URL, prefix: config.REDIS_PREFIX, heartbeatMs: config.REGISTRY_HEARTBEAT_MS, ttlMs: config.REGISTRY_TTL_MS, log })
  }
  return new LocalRegistry()
}

/** ADVERTISE_URL, else http://<HOST, or the host name when listening on every interface>:<bound port>. */
export function advertiseUrl(config: KernelConfig, port: number): string {
  if (config.ADVERTISE_URL) return config.ADVERTISE_URL.replace(/\/+$/, '')
  const host = ['0.0.0.0', '::', ''].includes(config.HOST) ? hostname() : config.HOST
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

export type { Instance, Registry } from './port'
