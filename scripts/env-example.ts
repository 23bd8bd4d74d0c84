/**
 * `bun scripts/env-example.ts > .env.example`: every variable the kernel and the plugins read,
 * with its default and meaning, from the declarations themselves (a test keeps the file in step).
 */
import { join } from 'node:path'
import { kernelSettings, type Spec } from '../kernel/config'
import { discover } from '../kernel/discovery'

const section = (title: string, spec: Spec) =>
  [`# --- ${title} ---`, ...Object.entries(spec).flatMap(([name, s]) => [`# ${s.doc}`, `#${name}=${s.default ?? ''}`]), ''].join('\n')

const out = ['# Tessera configuration. Every variable is optional; uncomment to change a default.', '', section('kernel', kernelSettings)]
for (const { plugin } of await discover([join(import.meta.dir, '..', 'plugins')]))
  if (plugin.settings && Object.keys(plugin.settings).length) out.push(section(`plugin ${plugin.name}`, plugin.settings))
process.stdout.write(out.join('\n'))
