/**
 * The split topology on one machine: the gateway plus one process per plugin (and N replicas of
 * any), all sharing PostgreSQL, Redis (registry, cache, Redis Streams events, Socket.IO adapter)
 * and, if given, an MQTT broker; each on its own port with ADVERTISE_URL set.
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
 *
 * Tests start the same topology with `startSplit(options)`, which also lets them kill and restart
 * one process (same name, port, MQTT client ids and environment).
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

export interface SplitOptions {
  database: string
  redis: string
  /** External broker for every process; without it each inventory replica runs an embedded one. */
  mqtt?: string
  /** Gateway port (0 = any free one). */
  port: number
  /** Processes per plugin, 1 when absent. */
  replicas?: Record<string, number>
  /** Folders of plugins (default `plugins`); each process gets them as PLUGINS_DIR. */
  pluginDirs?: string[]
  /** Environment for every process, over this process's own. */
  env?: Record<string, string>
  /** Where the logs go (default: a fresh temporary folder). */
  logDir?: string
}

export interface SplitProcess {
  /** `gateway`, the plugin's name, or `<plugin>-<n>` for replicas. */
  name: string
  plugin: string
  url: string
  log: string
  proc: Subprocess
  /** Sends `signal` and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** Starts it again with the same port and environment; resolves when it is ready. */
  restart(): Promise<void>
}

export interface Split {
  gateway: SplitProcess
  processes: SplitProcess[]
  /** The processes hosting `plugin`. */
  of(plugin: string): SplitProcess[]
  database: string
  redisPrefix: string
  schema?: string
  logDir: string
  /** SIGTERM to every process, SIGKILL after the grace period. */
  stop(): Promise<void>
}

export async function startSplit(options: SplitOptions): Promise<Split> {
  const id = Bun.randomUUIDv7().replace(/-/g, '').slice(-8)
  const pluginDirs = options.pluginDirs ?? [join(ROOT, 'plugins')]
  const plugins = (await discover(pluginDirs)).map((d) => d.plugin.name)
  const replicas = new Map(Object.entries(options.replicas ?? {}))
  for (const [name, count] of replicas)
    if (!plugins.includes(name) || !Number.isInteger(count) || count < 1) throw new Error(`replicas take plugin=count with a plugin of ${plugins.join(', ')} (got ${name}=${count})`)
  const schema = options.database.startsWith('postgres') ? `split_${id}` : undefined
  const database = schema ? `${options.database}${options.database.includes('?') ? '&' : '?'}schema=${schema}` : options.database
  const redisPrefix = `split:${id}:`
  const logDir = options.logDir ?? join(tmpdir(), `tessera-split-${id}`)
  mkdirSync(logDir, { recursive: true })

  /** What every process shares: one database, one Redis prefix and event bus, one broker (if given). */
  const shared: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ...options.env,
    DATABASE_URL: database,
    REDIS_URL: options.redis,
    REDIS_PREFIX: redisPrefix,
    // Events must cross processes: a subscriber is rarely where the publisher is.
    EVENT_BUS: 'redis-streams',
    HOST: '127.0.0.1',
    PLUGINS_DIR: pluginDirs.join(','),
    ...(options.mqtt ? { MQTT_URL: options.mqtt } : {}),
  }
  delete shared.PLUGIN_ROUTES // the Redis registry finds the owners

  const processes: SplitProcess[] = []

  async function launch(name: string, plugin: string, port: number): Promise<SplitProcess> {
    const url = `http://127.0.0.1:${port}`
    const log = join(logDir, `${name}.log`)
    const spawn = () => {
      const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
        cwd: ROOT,
        env: { ...shared, PLUGINS: plugin, PORT: String(port), ADVERTISE_URL: url, MQTT_PORT: '0', MQTT_INSTANCE: name, LAUNCHER_PID: String(process.pid) },
        stdout: Bun.file(log),
        stderr: Bun.file(join(logDir, `${name}.err.log`)),
      })
      proc.exited.then((code) => {
        if (!stopping && child.proc === proc && !child.expectExit) console.log(`tessera split: ${name} exited (${code ?? proc.signalCode}); see ${log}`)
      })
      return proc
    }
    const child = {
      name,
      plugin,
      url,
      log,
      proc: undefined as unknown as Subprocess,
      expectExit: false,
      async kill(signal: NodeJS.Signals = 'SIGKILL') {
        child.expectExit = true
        child.proc.kill(signal)
        await child.proc.exited
      },
      async restart() {
        if (child.proc.exitCode === null && child.proc.signalCode === null) await child.kill('SIGTERM')
        child.expectExit = false
        child.proc = spawn()
        await ready(child)
      },
    }
    child.proc = spawn()
    processes.push(child)
    return child
  }

  async function ready(child: SplitProcess): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS
    let last = 'no answer'
    while (Date.now() < deadline) {
      if (child.proc.exitCode !== null) break
      const answer = await fetch(`${child.url}/health/ready`, { signal: AbortSignal.timeout(1000) }).then(
        async (r) => ({ ok: r.ok, text: await r.text() }),
        () => undefined,
      )
      if (answer?.ok) return
      if (answer) last = answer.text
      await Bun.sleep(50)
    }
    throw new Error(`${child.name} did not become ready (last /health/ready: ${last}); its log:\n${await tail(child)}`)
  }

  /** Waits until the gateway's registry view lists every process (it re-reads the registry every heartbeat). */
  async function gatewaySeesEveryone(gateway: SplitProcess): Promise<void> {
    const expected = Object.fromEntries(plugins.map((p) => [p, replicas.get(p) ?? 1]))
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (Date.now() < deadline) {
      const owners = await fetch(`${gateway.url}/health/ready`).then((r) => r.json() as Promise<{ owners?: Record<string, number> }>, () => undefined)
      if (owners?.owners && plugins.every((p) => owners.owners![p] === expected[p])) return
      await Bun.sleep(100)
    }
    throw new Error(`the gateway does not see every process in the registry (expected owners ${JSON.stringify(expected)})`)
  }

  async function tail(child: SplitProcess) {
    const text = (await Bun.file(child.log).text().catch(() => '')) + (await Bun.file(join(logDir, `${child.name}.err.log`)).text().catch(() => ''))
    return text.split('\n').filter((l) => !l.includes('"msg":"request"')).slice(-20).join('\n')
  }

  let stopping: Promise<void> | undefined
  const stop = () =>
    (stopping ??= Promise.all(processes.map((c) => stopChild(c.proc, STOP_GRACE_MS))).then(() => {}))

  try {
    const gateway = await launch('gateway', 'gateway', options.port === 0 ? await freePort() : options.port)
    for (const plugin of plugins) {
      const n = replicas.get(plugin) ?? 1
      for (let i = 1; i <= n; i++) await launch(n > 1 ? `${plugin}-${i}` : plugin, plugin, await freePort())
    }
    await Promise.all(processes.map(ready))
    await gatewaySeesEveryone(gateway)
    return { gateway, processes, of: (plugin) => processes.filter((p) => p.plugin === plugin), database, redisPrefix, schema, logDir, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/** The embedded broker's port, from the process's "tessera ready" log line. */
async function mqttPortOf(child: SplitProcess): Promise<number | undefined> {
  const line = (await Bun.file(child.log).text()).split('\n').find((l) => l.includes('"tessera ready"'))
  return line ? JSON.parse(line).mqttPort : undefined
}

async function main() {
  const { values } = parseArgs({
    options: {
      replicas: { type: 'string', multiple: true, default: [] },
      database: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' },
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
      mqtt: { type: 'string' },
      port: { type: 'string', default: '3000' },
    },
  })
  const fail = (message: string): never => {
    console.error(`tessera split: ${message}`)
    process.exit(2)
  }
  const plugins = (await discover([join(ROOT, 'plugins')])).map((d) => d.plugin.name)
  const replicas: Record<string, number> = {}
  for (const spec of values.replicas.flatMap((r) => r.split(','))) {
    const [name, count] = spec.split('=')
    if (!plugins.includes(name) || !/^[1-9]\d*$/.test(count ?? '')) fail(`--replicas takes plugin=count with a plugin of ${plugins.join(', ')} (got "${spec}")`)
    replicas[name] = Number(count)
  }

  let split: Split | undefined
  let exiting = false
  const stopAll = async (exitCode: number) => {
    if (exiting) return
    exiting = true
    console.log('tessera split: stopping every process (SIGTERM)…')
    await split?.stop()
    console.log('tessera split: stopped')
    process.exit(exitCode)
  }
  process.once('SIGINT', () => void stopAll(0))
  process.once('SIGTERM', () => void stopAll(0))

  console.log('tessera split: starting the gateway and one process per plugin…')
  try {
    split = await startSplit({ database: values.database, redis: values.redis, mqtt: values.mqtt, port: Number(values.port), replicas })
  } catch (error) {
    console.error(`tessera split: ${(error as Error).message}`)
    process.exit(1)
  }
  console.log(`tessera split: ${split.processes.length} processes; database ${split.database}; Redis ${values.redis} prefix ${split.redisPrefix}; logs in ${split.logDir}`)
  for (const c of split.processes) console.log(`  ${c.name.padEnd(12)} ${c.url}`)
  if (values.mqtt) console.log(`  ${'MQTT'.padEnd(12)} ${values.mqtt} (external broker; inventory replicas share its subscriptions)`)
  else for (const c of split.of('inventory')) console.log(`  ${'MQTT'.padEnd(12)} mqtt://127.0.0.1:${await mqttPortOf(c)} (embedded broker of ${c.name})`)
  const realtime = split.processes.filter((c) => c.plugin === 'chat' || c.plugin === 'live')
  if (realtime.length) console.log(`  Socket.IO is not proxied by the gateway: ${realtime.map((c) => `/${c.plugin} at ${c.url}`).join(', ')}`)
  console.log(`tessera split: ready; the API is at ${split.gateway.url}/api/v1 and ${split.gateway.url}/swagger. Ctrl-C stops every process.`)
}

if (import.meta.main) await main()
