import { LocalRegistry } from './local'
import { type Instance, type Registry, readyOwners } from './port'

/** plugin → base URLs of its replicas, as PLUGIN_ROUTES gives them. */
export type Routes = Record<string, string[]>

/**
 * Owners from a fixed map, for platforms that provide discovery themselves (a Kubernetes Service
 * per plugin, say): no Redis needed. Every listed URL counts as ready; a dead one is found out by
 * the caller's circuit breaker, not by the registry.
 */
export class StaticRegistry implements Registry {
  private readonly local = new LocalRegistry()
  private readonly remote: Instance[]

  constructor(routes: Routes) {
    const byUrl = new Map<string, string[]>()
    for (const [plugin, urls] of Object.entries(routes)) for (const url of urls) byUrl.set(url, [...(byUrl.get(url) ?? []), plugin])
    this.remote = [...byUrl].map(([url, plugins]) => ({ id: `static:${url}`, url, plugins, ready: true }))
  }

  owners(plugin: string) {
    return readyOwners(this.instances(), plugin)
  }

  instances() {
    return [...this.local.instances(), ...this.remote]
  }

  join(self: Instance) {
    return this.local.join(self)
  }

  setReady(ready: boolean) {
    return this.local.setReady(ready)
  }

  withdraw() {
    return this.local.withdraw()
  }

  close() {
    return this.local.close()
  }
}

/** Parses `notes=http://a:3000|http://b:3000,users=http://users:3000` (a repeated plugin adds replicas). */
export function parseRoutes(raw: string): Routes {
  const routes: Routes = {}
  for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = entry.indexOf('=')
    const plugin = entry.slice(0, at).trim()
    if (at < 1 || !/^[a-z][a-z0-9-]*$/.test(plugin)) throw new Error(`must be plugin=url entries separated by commas (bad entry "${entry}")`)
    for (const url of entry.slice(at + 1).split('|').map((s) => s.trim())) {
      let parsed: URL
      try {
        parsed = new URL(url)
      } catch {
        throw new Error(`has a bad URL for ${plugin}: "${url}"`)
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`must use http(s) URLs (got "${url}" for ${plugin})`)
      const base = url.replace(/\/+$/, '')
      routes[plugin] = [...new Set([...(routes[plugin] ?? []), base])]
    }
  }
  return routes
}
