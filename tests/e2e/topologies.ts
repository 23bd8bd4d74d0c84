/**
 * The three deployments the end-to-end suite runs against, each started once and described only by
 * its public surfaces: the HTTP base URL (the gateway in split mode), the MQTT broker devices use,
 * and the Socket.IO URLs of /chat and /live.
 *
 *   embedded   all-in-one in this process: SQLite, memory cache and bus, the embedded aedes broker
 *   services   all-in-one as a child process (bun kernel/main.ts) on PostgreSQL + Redis + Mosquitto
 *   split      the gateway plus one process per plugin (two inventory replicas, two stockwatch
 *              replicas), scripts/split.ts's startSplit, on PostgreSQL + Redis + Mosquitto with
 *              shared subscriptions; checkouts pause 0.5 s before their last step (for the faults)
 *
 * Every deployment also hosts tests/e2e/fixtures/stockwatch, a durable subscriber of inventory's
 * stock events with an HTTP view of what it handled.
 */
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'
import postgres from 'postgres'
import { stopChild } from '../../scripts/bench/children'
import { freePort } from '../../scripts/free-port'
import { type Split, startSplit } from '../../scripts/split'
import { baseEnv, ROOT, services, spawnServer, startServer } from '../harness'
import { startMosquitto } from '../mosquitto'

export type TopologyName = 'embedded' | 'services' | 'split'

export interface Topology {
  name: TopologyName
  /** HTTP base URL: the server, or the gateway. */
  http: string
  /** Where devices connect. */
  mqtt: string
  /** Socket.IO base URLs of the /chat and /live namespaces. */
  realtime: { chat: string; live: string }
  /** True when the broker acknowledges a reading only after it is stored (the embedded one). */
  acksAfterCommit: boolean
  /** The split processes (split topology only). */
  split?: Split
  stop(): Promise<void>
}

const PLUGIN_DIRS = [join(ROOT, 'plugins'), join(ROOT, 'tests/e2e/fixtures')]

/** Which topologies this run covers: E2E_TOPOLOGIES, or by default what the services allow. */
export function selectedTopologies(): TopologyName[] {
  const named = (process.env.E2E_TOPOLOGIES ?? '').split(',').map((s) => s.trim()).filter(Boolean)
  if (named.length) {
    const unknown = named.filter((n) => !['embedded', 'services', 'split'].includes(n))
    if (unknown.length) throw new Error(`E2E_TOPOLOGIES: unknown ${unknown.join(', ')} (embedded, services, split)`)
    return named as TopologyName[]
  }
  return services.databaseUrl && services.redisUrl ? ['services', 'split'] : ['embedded']
}

/** Settings every topology shares: fast failure detection and sweeps, so faults show within the suite's time. */
const common = {
  PLUGINS_DIR: PLUGIN_DIRS.join(','),
  LOG_LEVEL: 'info',
  RATE_LIMIT_IP_PER_MIN: '100000',
  RATE_LIMIT_USER_PER_MIN: '100000',
  CHAT_OFFLINE_GRACE_SECONDS: '0',
  CHAT_AGENT_CAPACITY: '50',
  CHAT_SWEEP_MS: '200',
  REGISTRY_HEARTBEAT_MS: '200',
  REGISTRY_TTL_MS: '2000',
  CALL_BREAKER_HALF_OPEN_MS: '300',
  EVENT_CLAIM_IDLE_MS: '2000',
  // tok_slow (answered after 2.5 s) times out at the provider (2 s): the timeout path in every topology,
  // with room for tok_ok's answer on a busy machine.
  PAYMENTS_PROVIDER_TIMEOUT_MS: '2000',
  PAYMENTS_SANDBOX_SLOW_MS: '2500',
  // The suite's provider errors are on purpose; they must not open the circuit for the next test.
  PAYMENTS_BREAKER_FAILURES: '1000',
  // Interrupted checkouts and unknown-outcome authorizations are settled within a second of their cause going away.
  ORDERS_SWEEP_MS: '250',
  PAYMENTS_SWEEP_MS: '250',
  // postgres.js closes idle connections after 5 s: a dozen processes must not keep their pools on a shared server.
  PGIDLE_TIMEOUT: '5',
  // The suite's connections are named, to tell them apart on a shared server (pg_stat_activity.application_name).
  PGAPPNAME: 'tessera-e2e',
}

export async function startTopology(name: TopologyName): Promise<Topology> {
  if (name === 'embedded') return embedded()
  if (!services.databaseUrl || !services.redisUrl) throw new Error(`the ${name} topology needs TEST_DATABASE_URL and TEST_REDIS_URL`)
  return name === 'services' ? allInOneOnServices() : split()
}

async function embedded(): Promise<Topology> {
  const file = join(tmpdir(), `tessera-e2e-${Bun.randomUUIDv7().slice(-12)}.db`)
  // Forced embedded whatever TEST_DATABASE_URL says: this topology is the defaults.
  const server = await startServer({ ...common, LOG_LEVEL: 'silent', DATABASE_URL: `sqlite:${file}`, REDIS_URL: '' }, { keep: true })
  return {
    name: 'embedded',
    http: server.url,
    mqtt: `mqtt://127.0.0.1:${server.kernel.mqttPort}`,
    realtime: { chat: server.url, live: server.url },
    acksAfterCommit: true,
    async stop() {
      await server.stop()
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    },
  }
}

async function allInOneOnServices(): Promise<Topology> {
  const id = Bun.randomUUIDv7().replace(/-/g, '').slice(-12)
  const schema = `e2e_${id}`
  const prefix = `e2e:${id}:`
  const broker = await startMosquitto()
  const server = await spawnServer(
    baseEnv({
      ...common,
      PORT: String(await freePort()),
      DATABASE_URL: withSchema(services.databaseUrl!, schema),
      REDIS_URL: services.redisUrl!,
      REDIS_PREFIX: prefix,
      EVENT_BUS: 'redis-streams',
      MQTT_URL: broker.adminUrl,
      MQTT_PROVISIONING: 'mosquitto-dynsec',
      MQTT_INSTANCE: `e2e-${id}`,
    }),
  )
  return {
    name: 'services',
    http: server.url,
    mqtt: broker.url,
    realtime: { chat: server.url, live: server.url },
    acksAfterCommit: false,
    async stop() {
      await stopChild(server.proc, 12_000)
      await broker.stop()
      await dropStore(schema, prefix)
    },
  }
}

async function split(): Promise<Topology> {
  const broker = await startMosquitto()
  const topology = await startSplit({
    database: services.databaseUrl!,
    redis: services.redisUrl!,
    mqtt: broker.adminUrl,
    port: 0,
    replicas: { inventory: 2, stockwatch: 2 },
    pluginDirs: PLUGIN_DIRS,
    env: baseEnv({
      ...common,
      MQTT_PROVISIONING: 'mosquitto-dynsec',
      // A dozen processes share one PostgreSQL server (max_connections 100, other suites too): small pools.
      DATABASE_POOL_SIZE: '4',
      // Every checkout waits 0.5 s with its order placed, its stock reserved and its payment authorized,
      // so a process killed during checkouts surely catches some at that point (split-suite.ts, checkout faults).
      ORDERS_TEST_PAUSE_BEFORE: 'complete',
      ORDERS_TEST_PAUSE_MS: '500',
    }),
  }).catch(async (error) => {
    await broker.stop()
    throw error
  })
  const url = (plugin: string) => topology.of(plugin)[0].url
  return {
    name: 'split',
    http: topology.gateway.url,
    mqtt: broker.url,
    // The gateway does not proxy Socket.IO: clients reach the processes hosting the namespaces (README, "Split topology").
    realtime: { chat: url('chat'), live: url('live') },
    acksAfterCommit: false,
    split: topology,
    async stop() {
      await topology.stop()
      await broker.stop()
      await dropStore(topology.schema!, topology.redisPrefix)
      if (process.env.E2E_KEEP_LOGS) console.log(`split logs kept in ${topology.logDir}`)
      else rmSync(topology.logDir, { recursive: true, force: true })
    },
  }
}

const withSchema = (url: string, schema: string) => `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`

async function dropStore(schema: string, prefix: string) {
  const sql = postgres(services.databaseUrl!, { onnotice: () => {}, max: 1 })
  await sql.unsafe(`drop schema if exists "${schema}" cascade`)
  await sql.end()
  const redis = new Redis(services.redisUrl!)
  const keys = await redis.keys(`${prefix}*`)
  if (keys.length) await redis.del(...keys)
  await redis.quit()
}
