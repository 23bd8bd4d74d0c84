/**
 * Configuration comes from the environment only. Every variable is declared once here (or in a
 * plugin's manifest) with its default and one sentence of meaning; `.env.example` lists them all
 * and a test keeps it in step. A bad value stops start-up with a message that names the variable.
 */
import { parseRoutes, type Routes } from './registry/static'

export interface Setting<T> {
  /** One sentence: what the variable means. */
  doc: string
  /** The default, as the text one would write in the environment; undefined = unset. */
  default?: string
  parse: (raw: string) => T
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`)
    this.name = 'ConfigError'
  }
}

const fail = (why: string): never => {
  throw new Error(why)
}

export const setting = {
  string: (doc: string, def?: string): Setting<string> => ({ doc, default: def, parse: (raw) => raw }),
  optional: (doc: string): Setting<string | undefined> => ({ doc, parse: (raw) => raw || undefined }),
  int: (doc: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): Setting<number> => ({
    doc,
    default: String(def),
    parse: (raw) => {
      const n = Number(raw)
      if (!/^-?\d+$/.test(raw.trim()) || n < min || n > max) fail(`must be an integer from ${min} to ${max}`)
      return n
    },
  }),
  bool: (doc: string, def: boolean): Setting<boolean> => ({
    doc,
    default: String(def),
    parse: (raw) => {
      if (/^(1|true|yes|on)$/i.test(raw)) return true
      if (/^(0|false|no|off)$/i.test(raw)) return false
      return fail('must be true or false')
    },
  }),
  oneOf: <const T extends string>(doc: string, values: readonly T[], def: T): Setting<T> => ({
    doc,
    default: def,
    parse: (raw) => (values.includes(raw as T) ? (raw as T) : fail(`must be one of ${values.join(', ')}`)),
  }),
  list: (doc: string, def?: string): Setting<string[]> => ({
    doc,
    default: def,
    parse: (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean),
  }),
  url: (doc: string, protocols: string[], def?: string): Setting<string | undefined> => ({
    doc,
    default: def,
    parse: (raw) => {
      if (!raw) return undefined
      let url: URL
      try {
        url = new URL(raw)
      } catch {
        return fail(`must be a URL (${protocols.join(' or ')})`)
      }
      if (!protocols.includes(url.protocol)) fail(`must start with ${protocols.join(' or ')}`)
      return raw
    },
  }),
}

export type Spec = Record<string, Setting<unknown>>
export type Values<S extends Spec> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never }

/** Reads every variable of `spec` from `env`, collecting all problems before failing. */
export function readSettings<S extends Spec>(spec: S, env: Record<string, string | undefined>): Values<S> {
  const out: Record<string, unknown> = {}
  const problems: string[] = []
  for (const [name, s] of Object.entries(spec)) {
    const raw = env[name] ?? s.default
    if (raw === undefined || raw === '') {
      out[name] = s.default === undefined ? undefined : s.parse(s.default)
      continue
    }
    try {
      out[name] = s.parse(raw)
    } catch (e) {
      problems.push(`${name} ${(e as Error).message} (got ${JSON.stringify(raw)})`)
    }
  }
  if (problems.length) throw new ConfigError(problems)
  return out as Values<S>
}

export const DEV_JWT_SECRET = 'tessera-development-secret-change-me-0000'

export const kernelSettings = {
  NODE_ENV: setting.oneOf('development, test or production; production refuses unsafe defaults', ['development', 'test', 'production'], 'development'),
  PORT: setting.int('HTTP + Socket.IO port (0 = pick a free one)', 3000, 0, 65535),
  HOST: setting.string('interface to listen on', '0.0.0.0'),
  DATABASE_URL: {
    doc: 'sqlite:<path>, sqlite::memory: or postgres://… (add ?schema=<name> to use a PostgreSQL schema)',
    default: 'sqlite:./data/tessera.db',
    parse: (raw: string) =>
      /^sqlite:.+/.test(raw) || /^postgres(ql)?:\/\/.+/.test(raw) ? raw : fail('must be sqlite:<path>, sqlite::memory: or postgres://…'),
  } as Setting<string>,
  LAUNCHER_PID: setting.int('process id of the launcher that started this process (scripts/split.ts, tests): once it is gone, this one stops gracefully, so a killed launcher leaves no servers behind; 0 = none', 0, 0),
  DATABASE_POOL_SIZE: setting.int('PostgreSQL connections this process may open at most (size it so every process of a deployment fits under max_connections)', 10, 1, 500),
  REDIS_URL: setting.url('Redis for cache, rate limits, registry and cross-process events; unset = in-memory', ['redis:', 'rediss:']),
  REDIS_PREFIX: setting.string('prefix of every Redis key this deployment writes', 'tessera:'),
  MQTT_URL: setting.url('external MQTT broker; unset = embedded broker', ['mqtt:', 'mqtts:', 'ws:', 'wss:']),
  MQTT_PORT: setting.int('port of the embedded MQTT broker (0 = pick a free one and log it)', 1883, 0, 65535),
  MQTT_CONSUMERS: setting.int('connections per consumer group to an external broker (each handles one message at a time)', 8, 1, 64),
  MQTT_SESSION_EXPIRY_SECONDS: setting.int('how long an external broker keeps messages for a consumer that is away', 86_400, 0),
  MQTT_INSTANCE: setting.optional('this replica\'s name in its MQTT client ids (default: the host name); must be stable across restarts'),
  MQTT_PROVISIONING: setting.oneOf('how device credentials reach an external broker: none (the operator configures it) or mosquitto-dynsec (needs an admin account in MQTT_URL)', ['none', 'mosquitto-dynsec'], 'none'),
  JWT_SECRET: setting.string('HMAC secret of access tokens; production refuses the default', DEV_JWT_SECRET),
  PLUGINS: setting.list('comma-separated plugins to host; unset = every plugin; `gateway` is the gateway role'),
  PLUGINS_DIR: setting.list('folders holding one sub-folder per plugin, comma-separated', 'plugins'),
  LOG_LEVEL: setting.oneOf('pino log level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  RATE_LIMIT_IP_PER_MIN: setting.int('requests per minute per client IP', 1200, 1),
  RATE_LIMIT_USER_PER_MIN: setting.int('requests per minute per signed-in user', 600, 1),
  TRUST_PROXY: setting.bool('take the client IP from X-Forwarded-For (only behind a trusted proxy)', false),
  CORS_ORIGINS: setting.list('allowed CORS origins, comma-separated; * = any', '*'),
  BODY_LIMIT_BYTES: setting.int('largest accepted request body', 1_048_576, 1),
  IDEMPOTENCY_TTL_SECONDS: setting.int('how long an Idempotency-Key is remembered', 86_400, 1),
  SHUTDOWN_TIMEOUT_MS: setting.int('longest wait for in-flight work on SIGTERM before closing anyway', 8_000, 0),
  REALTIME_RECOVERY_SECONDS: setting.int('how long a dropped Socket.IO client may be away and still get its rooms and missed events back (connection state recovery)', 120, 0, 3_600),
  REALTIME_EVENTS_PER_SECOND: setting.int('client events per second per socket, for events without their own limit', 20, 1),
  REALTIME_MAX_PAYLOAD_BYTES: setting.int('largest Socket.IO event payload a handler sees (larger ones get an error ack); the connection closes beyond 16 times this', 65_536, 1_024, 16_777_216),
  REALTIME_REVOCATION_SWEEP_SECONDS: setting.int('how often open Socket.IO connections are checked for tokens revoked since their handshake (a disabled user is disconnected); revocations made in the same process act at once', 5, 1, 3_600),
  REALTIME_POLLING: setting.bool('allow the HTTP long-polling transport; with several processes behind one address it needs sticky sessions (false = WebSocket only)', true),
  REALTIME_STREAM_MAXLEN: setting.int('Socket.IO emits kept for connection state recovery: entries of the Redis stream that carries them between processes, or per namespace in memory in one process (bounds how far back recovery reaches)', 100_000, 1_000),
  EVENT_BUS: setting.oneOf('event transport between the outbox relay and handlers: in-process (this process only) or redis-streams (across processes, needs REDIS_URL)', ['in-process', 'redis-streams'], 'in-process'),
  EVENT_MAX_ATTEMPTS: setting.int('deliveries of an event to one handler before it is dead-lettered', 5, 1),
  EVENT_RETRY_BASE_MS: setting.int('first retry delay of a failed handler; doubles on each attempt', 200, 0),
  EVENT_RELAY_INTERVAL_MS: setting.int('how often the outbox relay looks for events it was not told about', 1_000, 10),
  EVENT_CONSUMER_NAME: setting.optional('this replica\'s consumer name in the Redis Streams groups (default: host name and process id); must be unique among live replicas'),
  EVENT_CLAIM_IDLE_MS: setting.int('how long an event may sit un-acknowledged with a replica that stopped renewing it (it died) before another replica claims it (redis-streams)', 30_000, 100),
  EVENT_STREAM_MAXLEN: setting.int('most entries a Redis event stream keeps; entries every group has acknowledged go sooner, and past this bound the oldest go even if a group has not read them', 100_000, 1),
  EVENT_STREAM_TRIM_INTERVAL_MS: setting.int('how often each process trims the Redis event streams it uses (redis-streams)', 10_000, 10),
  EVENT_RETENTION_SECONDS: setting.int('how long published events stay in the outbox table for inspection before they are deleted', 86_400, 1),
  REGISTRY: setting.oneOf('where processes find the owners of plugins they do not host: auto = static when PLUGIN_ROUTES is set, else redis when REDIS_URL is set, else local (this process alone)', ['auto', 'local', 'static', 'redis'], 'auto'),
  PLUGIN_ROUTES: {
    doc: 'static owners of plugins hosted elsewhere, e.g. notes=http://notes-1:3000|http://notes-2:3000,users=http://users:3000 (| or a repeated name adds replicas)',
    parse: (raw: string) => (raw ? parseRoutes(raw) : undefined),
  } as Setting<Routes | undefined>,
  ADVERTISE_URL: setting.url('base URL other processes reach this one at (default http://<HOST, or the host name on 0.0.0.0>:<PORT>)', ['http:', 'https:']),
  REGISTRY_HEARTBEAT_MS: setting.int('how often a process renews its registry entry and re-reads the others (Redis registry)', 1_000, 50),
  REGISTRY_TTL_MS: setting.int('how long a registry entry outlives its last heartbeat; a process killed silently disappears after it', 5_000, 100),
  INTERNAL_SECRET: setting.optional('HMAC secret of the service tokens processes call each other with (default: derived from JWT_SECRET; set the same value in every process)'),
  CALL_TIMEOUT_MS: setting.int('deadline of a ctx.call that names none; it travels with remote calls', 5_000, 1),
  CALL_RETRIES: setting.int('extra attempts of a remote call to an idempotent action after a transport failure or a 503, within its deadline', 2, 0, 10),
  CALL_BREAKER_FAILURES: setting.int('consecutive failures that open the circuit to one owner URL (calls to it then fail fast until a half-open probe succeeds)', 3, 1),
  GATEWAY_TIMEOUT_MS: setting.int('gateway role: longest wait for an owner to start answering a forwarded request (then 503)', 30_000, 1),
  CALL_BREAKER_HALF_OPEN_MS: setting.int('how long an open circuit waits before one probe call may try the owner again', 1_000, 10),
} satisfies Spec

export type KernelConfig = Values<typeof kernelSettings>

export function loadKernelConfig(env: Record<string, string | undefined>): KernelConfig {
  const config = readSettings(kernelSettings, env)
  const problems: string[] = []
  if (config.NODE_ENV === 'production' && config.JWT_SECRET === DEV_JWT_SECRET)
    problems.push('JWT_SECRET must be set to a secret of your own when NODE_ENV=production')
  if (config.NODE_ENV === 'production' && config.JWT_SECRET.length < 32)
    problems.push('JWT_SECRET must be at least 32 characters when NODE_ENV=production')
  if (config.NODE_ENV === 'production' && config.INTERNAL_SECRET !== undefined && config.INTERNAL_SECRET.length < 32)
    problems.push('INTERNAL_SECRET must be at least 32 characters when NODE_ENV=production')
  if (config.REGISTRY === 'redis' && !config.REDIS_URL) problems.push('REGISTRY=redis needs REDIS_URL')
  if (config.REGISTRY === 'static' && !config.PLUGIN_ROUTES) problems.push('REGISTRY=static needs PLUGIN_ROUTES')
  if (config.EVENT_BUS === 'redis-streams' && !config.REDIS_URL) problems.push('EVENT_BUS=redis-streams needs REDIS_URL: set REDIS_URL to the Redis that carries the events')
  if (problems.length) throw new ConfigError(problems)
  return config
}
