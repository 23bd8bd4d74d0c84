/**
 * The split topology on one machine: the gateway plus one process per plugin (and N replicas of
 * any), all sharing PostgreSQL and Redis, each on its own port with ADVERTISE_URL set.
 *
 *   bun run scripts/split.ts [--replicas inventory=2] [--database postgres://…] [--redis redis://…]
 *                            [--mqtt mqtt://…] [--port 3000]
 *
 * Defaults: postgres://postgres@127.0.0.1:5432/test in a fresh schema, redis://127.0.0.1:6379 with a
 * fresh key prefix, the gateway on port 3000 (0 = any free port). Without --mqtt every inventory
 * replica runs its own embedded broker (on a free port, printed); with it, all processes use that
 * broker and inventory replicas share its subscriptions. Prints the URLs, waits until every process
 * answers /health/ready, and on SIGINT/SIGTERM sends SIGTERM to each, waits for them, and exits 0.
 * Each process's log goes to a file in a temporary folder (printed), not to this terminal.
 */
import { mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Subprocess } from 'bun'
import { discover } from '../kernel/discovery'
import { stopChild } from './bench/children'
import { freePort } from './free-port'

const ROOT = join(import.meta.dir, '..')
const READY_TIMEOUT_MS = 30_000
const STOP_GRACE_MS = 12_000 // above the server's own 9.5 s shutdown watchdog

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', multiple: true, default: [] },
    database: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    mqtt: { type: 'string' },
    port: { type: 'string', default: '3000' },
  },
})

const id = Bun.randomUUIDv7().replace(/-/g, '').slice(-8)
const plugins = (await discover(['plugins'])).map((d) => d.plugin.name)
const replicas = new Map<string, number>()
for (const spec of values.replicas.flatMap((r) => r.split(','))) {
  const [name, count] = spec.split('=')
  if (!plugins.includes(name) || !/^[1-9]\d*$/.test(count ?? '')) fail(`--replicas takes plugin=count with a plugin of ${plugins.join(', ')} (got "${spec}")`)
  replicas.set(name, Number(count))
}
const database = values.database.startsWith('postgres')
  ? `${values.database}${values.database.includes('?') ? '&' : '?'}schema=split_${id}`
  : values.database
const logDir = join(tmpdir(), `tessera-split-${id}`)
mkdirSync(logDir, { recursive: true })

/** What every process shares: one database, one Redis prefix, one broker (if given). */
const shared: Record<string, string> = {
  ...(process.env as Record<string, string>),
  DATABASE_URL: database,
  REDIS_URL: values.redis,
  REDIS_PREFIX: `split:${id}:`,
  HOST: '127.0.0.1',
  ...(values.mqtt ? { MQTT_URL: values.mqtt } : {}),
}
delete shared.PLUGIN_ROUTES // the Redis registry finds the owners

interface Child {
  name: string
  url: string
  log: string
  proc: Subprocess
  stopping?: boolean
}

const children: Child[] = []

async function launch(name: string, pluginList: string, port: number, extra: Record<string, string> = {}): Promise<Child> {
  const url = `http://127.0.0.1:${port}`
  const log = join(logDir, `${name}.log`)
  const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
    cwd: ROOT,
    env: { ...shared, PLUGINS: pluginList, PORT: String(port), ADVERTISE_URL: url, MQTT_PORT: '0', MQTT_INSTANCE: name, ...extra },
    stdout: Bun.file(log),
    stderr: Bun.file(join(logDir, `${name}.err.log`)),
  })
  const child: Child = { name, url, log, proc }
  proc.exited.then((code) => {
    if (!child.stopping) console.log(`tessera split: ${name} exited (${code ?? proc.signalCode}); see ${log}`)
  })
  children.push(child)
  return child
}

async function ready(child: Child): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) break
    const ok = await fetch(`${child.url}/health/ready`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false)
    if (ok) return
    await Bun.sleep(100)
  }
  throw new Error(`${child.name} did not become ready; its log:\n${await tail(child)}`)
}

/** Waits until the gateway's registry view lists every process (it re-reads the registry every heartbeat). */
async function gatewaySeesEveryone(gateway: Child): Promise<void> {
  const expected = Object.fromEntries(plugins.map((p) => [p, replicas.get(p) ?? 1]))
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    const owners = await fetch(`${gateway.url}/health/ready`).then((r) => r.json() as Promise<{ owners?: Record<string, number> }>, () => undefined)
    if (owners?.owners && plugins.every((p) => owners.owners![p] === expected[p])) return
    await Bun.sleep(100)
  }
  throw new Error(`the gateway does not see every process in the registry (expected owners ${JSON.stringify(expected)})`)
}

async function tail(child: Child) {
  const text = (await Bun.file(child.log).text().catch(() => '')) + (await Bun.file(join(logDir, `${child.name}.err.log`)).text().catch(() => ''))
  return text.split('\n').slice(-20).join('\n')
}

/** The embedded broker's port, from the process's "tessera ready" log line. */
async function mqttPortOf(child: Child): Promise<number | undefined> {
  const line = (await Bun.file(child.log).text()).split('\n').find((l) => l.includes('"tessera ready"'))
  return line ? JSON.parse(line).mqttPort : undefined
}

let stopping: Promise<void> | undefined
function stopAll(exitCode: number) {
  stopping ??= (async () => {
    console.log('tessera split: stopping every process (SIGTERM)…')
    for (const c of children) c.stopping = true
    await Promise.all(children.map((c) => stopChild(c.proc, STOP_GRACE_MS)))
    console.log('tessera split: stopped')
    process.exit(exitCode)
  })()
  return stopping
}
process.once('SIGINT', () => void stopAll(0))
process.once('SIGTERM', () => void stopAll(0))

function fail(message: string): never {
  console.error(`tessera split: ${message}`)
  process.exit(2)
}

try {
  const gatewayPort = values.port === '0' ? await freePort() : Number(values.port)
  const gateway = await launch('gateway', 'gateway', gatewayPort)
  for (const plugin of plugins) {
    const n = replicas.get(plugin) ?? 1
    for (let i = 1; i <= n; i++) await launch(n > 1 ? `${plugin}-${i}` : plugin, plugin, await freePort())
  }
  console.log(`tessera split: ${children.length} processes; database ${database}; Redis ${values.redis} prefix split:${id}:; logs in ${logDir}`)
  for (const c of children) console.log(`  ${c.name.padEnd(12)} ${c.url}`)
  await Promise.all(children.map(ready))
  await gatewaySeesEveryone(gateway)
  if (values.mqtt) console.log(`  ${'MQTT'.padEnd(12)} ${values.mqtt} (external broker; inventory replicas share its subscriptions)`)
  else
    for (const c of children.filter((c) => c.name.startsWith('inventory')))
      console.log(`  ${'MQTT'.padEnd(12)} mqtt://127.0.0.1:${await mqttPortOf(c)} (embedded broker of ${c.name})`)
  const realtime = children.filter((c) => ['chat', 'live'].some((p) => c.name === p || c.name.startsWith(`${p}-`)))
  if (realtime.length) console.log(`  Socket.IO is not proxied by the gateway: ${realtime.map((c) => `/${c.name.replace(/-\d+$/, '')} at ${c.url}`).join(', ')}`)
  console.log(`tessera split: ready; the API is at ${gateway.url}/api/v1 and ${gateway.url}/swagger. Ctrl-C stops every process.`)
} catch (error) {
  console.error(`tessera split: ${(error as Error).message}`)
  await stopAll(1)
}
