/**
 * Finds `<dir>/<name>/plugin.ts`, checks the set (one name each, folder = name, every dependency
 * exists, no cycles), and sorts the selected plugins so each comes after what it depends on.
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { AnyPlugin } from './plugin'

export interface Discovered {
  plugin: AnyPlugin
  dir: string
}

export class DiscoveryError extends Error {
  override name = 'DiscoveryError'
}

const PROJECT_ROOT = resolve(import.meta.dir, '..')

export const RESERVED = ['gateway', 'events', 'health', 'metrics', 'swagger']

export async function discover(pluginsDirs: string[]): Promise<Discovered[]> {
  const found: Discovered[] = []
  for (const pluginsDir of pluginsDirs) {
    // Relative folders are the project's, so the server starts the same from any working directory.
    const root = resolve(PROJECT_ROOT, pluginsDir)
    if (!existsSync(root)) throw new DiscoveryError(`PLUGINS_DIR ${pluginsDir} does not exist`)
    for (const file of [...new Bun.Glob('*/plugin.ts').scanSync({ cwd: root })].sort()) {
      const mod = await import(join(root, file))
      const plugin: AnyPlugin | undefined = mod.default
      if (!plugin?.name || typeof plugin.setup !== 'function')
        throw new DiscoveryError(`${join(pluginsDir, file)} must export default definePlugin({ name, version, setup, … })`)
      found.push({ plugin, dir: join(root, file, '..') })
    }
  }
  const byName = new Map<string, Discovered>()
  for (const d of found) {
    const folder = d.dir.split('/').pop()
    if (byName.has(d.plugin.name))
      throw new DiscoveryError(`two plugins are named "${d.plugin.name}": ${byName.get(d.plugin.name)!.dir} and ${d.dir}`)
    if (folder !== d.plugin.name) throw new DiscoveryError(`plugin "${d.plugin.name}" must live in a folder of that name, not "${folder}"`)
    if (RESERVED.includes(d.plugin.name)) throw new DiscoveryError(`"${d.plugin.name}" is a reserved name; rename the plugin`)
    if (!/^[a-z][a-z0-9-]*$/.test(d.plugin.name)) throw new DiscoveryError(`plugin name "${d.plugin.name}" must be lower-case letters, digits and dashes`)
    byName.set(d.plugin.name, d)
  }
  for (const d of found)
    for (const dep of d.plugin.dependsOn ?? [])
      if (!byName.has(dep)) throw new DiscoveryError(`plugin "${d.plugin.name}" depends on "${dep}", which does not exist`)
  orderByDependencies(found, byName)
  return found
}

/** The plugins named in PLUGINS (all when empty), dependencies first. */
export function select(all: Discovered[], names: string[] | undefined): Discovered[] {
  const byName = new Map(all.map((d) => [d.plugin.name, d]))
  const wanted = names?.length ? names.filter((n) => n !== 'gateway') : [...byName.keys()]
  const unknown = wanted.filter((n) => !byName.has(n))
  if (unknown.length)
    throw new DiscoveryError(`PLUGINS names unknown plugin(s) ${unknown.join(', ')}; known: ${[...byName.keys()].join(', ') || 'none'}`)
  const chosen = new Set(wanted)
  return orderByDependencies(all, byName).filter((d) => chosen.has(d.plugin.name))
}

function orderByDependencies(all: Discovered[], byName: Map<string, Discovered>): Discovered[] {
  const sorted: Discovered[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (d: Discovered, path: string[]) => {
    const name = d.plugin.name
    if (state.get(name) === 'done') return
    if (state.get(name) === 'visiting') throw new DiscoveryError(`plugins depend on each other in a cycle: ${[...path.slice(path.indexOf(name)), name].join(' → ')}`)
    state.set(name, 'visiting')
    for (const dep of d.plugin.dependsOn ?? []) visit(byName.get(dep)!, [...path, name])
    state.set(name, 'done')
    sorted.push(d)
  }
  for (const d of all) visit(d, [])
  return sorted
}
