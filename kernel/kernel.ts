/**
 * The kernel: reads configuration, discovers plugins, gives each one the same ports, and runs the
 * lifecycle. `start` and `stop` read top to bottom as the list of steps they are.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Server } from 'bun'
import type { AnyElysia } from 'elysia'
import { type Cache, openCache, type RateLimiter } from './cache'
import { callerFor } from './calls'
import { callEndpoint } from './calls/endpoint'
import { HttpTransport } from './calls/http'
import { LocalTransport } from './calls/local'
import { internalSecret, ServiceTokens } from './calls/service-token'
import { ConfigError, type KernelConfig, loadKernelConfig, readSettings } from './config'
import { type Database, materialize, openDatabase } from './db'
import { type Discovered, discover, select } from './discovery'
import { Delivery, observer } from './events/delivery'
import { inProcessBus } from './events/in-process'
import { Outbox } from './events/outbox'
import type { EventBus, EventEnvelope } from './events/port'
import { redisStreamsBus } from './events/redis-streams'
import { deadLetterRoutes } from './events/routes'
import { Gateway } from './gateway'
import { type App, createApp, type Readiness } from './http/app'
import { serveApp } from './http/edge'
import { Identity } from './http/identity'
import { Metrics, tally } from './http/metrics'
import { pluginRouter, routerBase } from './http/router'
import { createLogger, type Logger } from './log'
import { type MqttPort, openMqtt } from './mqtt'
import { RealtimeServer } from './realtime'
import type { AnyPlugin, HealthReport, PluginContext } from './plugin'
import { advertiseUrl, openRegistry, type Registry } from './registry'

const VERSION: string = JSON.parse(readFileSync(join(import.meta.dir, '..', 'package.json'), 'utf8')).version
const KERNEL_MIGRATIONS = join(import.meta.dir, 'migrations')

interface Hosted {
  plugin: AnyPlugin
  dir: string
  ctx: PluginContext<any, any>
  status: HealthReport
}

export interface KernelOptions {
  /** Environment to read configuration from (default: process.env). */
  env?: Record<string, string | undefined>
}

export class Kernel {
  private server: Server<unknown> | undefined
  private started = false
  private accepting = false
  private stopping: Promise<void> | undefined

  private constructor(
    readonly config: KernelConfig,
    readonly log: Logger,
    private readonly db: Database,
    private readonly cache: Cache,
    private readonly bus: EventBus,
    private readonly outbox: Outbox,
    private readonly app: App,
    private readonly hosted: Hosted[],
    private readonly metrics: Metrics,
    private readonly ipLimiter: RateLimiter,
    private readonly mqtt: MqttPort & { readonly inUse: boolean },
    private readonly registry: Registry,
    private readonly realtime: RealtimeServer,
    private readonly tokens: ServiceTokens,
    private readonly gateway: Gateway | undefined,
  ) {}

  /** This process in the registry: unique per start. */
  readonly instanceId = Bun.randomUUIDv7()

  get port(): number {
    return this.server?.port ?? 0
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** The embedded MQTT broker's port (0 with an external broker). */
  get mqttPort(): number {
    return this.mqtt.port
  }

  /** The base URL other processes reach this one at (ADVERTISE_URL, or derived from HOST and the bound port). */
  get advertisedUrl(): string {
    return advertiseUrl(this.config, this.port)
  }

  get plugins(): string[] {
    return this.hosted.map((h) => h.plugin.name)
  }

  static async start(options: KernelOptions = {}): Promise<Kernel> {
    const env = options.env ?? process.env
    // 1. Configuration: the kernel's, then every selected plugin's, all problems at once.
    const config = loadKernelConfig(env)
    const log = createLogger(config.LOG_LEVEL)
    const discovered = await discover(config.PLUGINS_DIR)
    const selected = select(discovered, config.PLUGINS)
    const pluginConfigs = readPluginSettings(selected, env)

    // 2. Ports, with the adapters the configuration picks.
    const db = openDatabase(config.DATABASE_URL, { poolSize: config.DATABASE_POOL_SIZE })
    const cache = openCache(config.REDIS_URL, config.REDIS_PREFIX, log.child({ component: 'cache' }))
    const metrics = new Metrics()
    const identity = new Identity(config.JWT_SECRET, cache)
    const mqtt = openMqtt(config, log.child({ component: 'mqtt' }), !env.MQTT_PORT)
    const realtime = new RealtimeServer({ config, log: log.child({ component: 'realtime' }), identity, metrics })
    const buses: Record<KernelConfig['EVENT_BUS'], () => EventBus> = {
      'in-process': inProcessBus,
      'redis-streams': () =>
        redisStreamsBus({
          url: config.REDIS_URL!,
          prefix: config.REDIS_PREFIX,
          consumerName: config.EVENT_CONSUMER_NAME,
          claimIdleMs: config.EVENT_CLAIM_IDLE_MS,
          trimIntervalMs: config.EVENT_STREAM_TRIM_INTERVAL_MS,
          maxLen: config.EVENT_STREAM_MAXLEN,
          maxAttempts: config.EVENT_MAX_ATTEMPTS,
          retryBaseMs: config.EVENT_RETRY_BASE_MS,
          log: log.child({ component: 'bus' }),
        }),
    }
    const bus = buses[config.EVENT_BUS]()
    const outbox = new Outbox(db, bus, log.child({ component: 'outbox' }), config.EVENT_RELAY_INTERVAL_MS, config.EVENT_RETENTION_SECONDS * 1000)
    // Counted once per event-loop turn: one transaction may hand over hundreds of events.
    const handled = tally(metrics.forPlugin('events').counter('handled_total', 'Event deliveries by consumer and outcome', ['consumer', 'outcome']))
    const delivery = new Delivery(
      db,
      log.child({ component: 'events' }),
      { maxAttempts: config.EVENT_MAX_ATTEMPTS, baseDelayMs: config.EVENT_RETRY_BASE_MS },
      (consumer, outcome) => handled({ consumer, outcome }),
    )
    // Calls: to the plugins hosted here directly, to the others over HTTP to an owner the registry knows.
    const registry = openRegistry(config, log.child({ component: 'registry' }))
    const tokens = new ServiceTokens(internalSecret(config))
    const local = new LocalTransport()
    const remote = new HttpTransport(registry, tokens, {
      retries: config.CALL_RETRIES,
      breakerFailures: config.CALL_BREAKER_FAILURES,
      halfOpenMs: config.CALL_BREAKER_HALF_OPEN_MS,
      log: log.child({ component: 'calls' }),
      metrics: metrics.forPlugin('calls'),
    })
    const limiter = (name: string, perMinute: number): RateLimiter => cache.limiter(name, { points: perMinute, durationSeconds: 60 })
    const ipLimiter = limiter('ip', config.RATE_LIMIT_IP_PER_MIN)
    const userLimiter = limiter('user', config.RATE_LIMIT_USER_PER_MIN)
    const base = routerBase({ identity, cache, ipLimiter, userLimiter, idempotencyTtlSeconds: config.IDEMPOTENCY_TTL_SECONDS })
    // The gateway role: a part of the kernel (edge routes, no plugin), for /api/v1 of plugins hosted elsewhere.
    const gateway = config.PLUGINS?.includes('gateway')
      ? new Gateway({
          registry,
          identity,
          tokens,
          ipLimiter,
          userLimiter,
          hosted: selected.map((d) => d.plugin.name),
          known: discovered.map((d) => d.plugin.name),
          breakerFailures: config.CALL_BREAKER_FAILURES,
          halfOpenMs: config.CALL_BREAKER_HALF_OPEN_MS,
          timeoutMs: config.GATEWAY_TIMEOUT_MS,
          bodyLimitBytes: config.BODY_LIMIT_BYTES,
          metrics: metrics.forPlugin('gateway'),
          log: log.child({ component: 'gateway' }),
        })
      : undefined

    // 3. The HTTP app; plugins add their routers during setup.
    const hosted: Hosted[] = []
    let kernel: Kernel | undefined
    const app = createApp({
      config,
      log,
      metrics,
      readiness: () => kernel?.readiness() ?? Promise.resolve({ started: false, accepting: false, plugins: {} }),
      tags: selected.map((d) => ({ name: d.plugin.name, description: d.plugin.description ?? d.plugin.name })).concat({
        name: 'events',
        description: 'dead letters of event handlers (admin)',
      }),
      version: VERSION,
    })
    const routers: AnyElysia[] = [
      deadLetterRoutes(base, delivery),
      callEndpoint({ local, tokens, accepting: () => kernel?.accepting ?? false, defaultTimeoutMs: config.CALL_TIMEOUT_MS, log }),
    ]

    // 4. Setup: each plugin registers what it offers; no I/O yet.
    try {
      for (const { plugin, dir } of selected) {
        const name = plugin.name
        const ctx: PluginContext<any, any> = {
          name,
          config: pluginConfigs.get(name) as never,
          nodeEnv: config.NODE_ENV,
          log: log.child({ plugin: name }),
          db,
          tables: plugin.schema ? materialize(plugin.schema, db.dialect) : {},
          cache,
          metrics: metrics.forPlugin(name),
          identity,
          events: {
            publish: (type, payload) => outbox.record(envelope(name, type, payload)),
            publishAll: (type, payloads) => outbox.record(...payloads.map((payload) => envelope(name, type, payload))),
            on: (type, handler, options) => bus.subscribe(`${name}:${type}`, type, delivery.wrap(`${name}:${type}`, handler as never, options)),
            onBatch: (type, handler, options) => bus.subscribe(`${name}:${type}`, type, delivery.wrapBatch(`${name}:${type}`, handler as never, options)),
            observe: (type, handler) =>
              bus.subscribe(`${name}:${type}:observer`, type, observer(`${name}:${type}:observer`, handler as never, log.child({ component: 'events' }), (consumer, outcome) => handled({ consumer, outcome }))),
          },
          call: callerFor(name, [local, remote], config.CALL_TIMEOUT_MS),
          provide: (action, handler) => {
            if (!action.startsWith(`${name}.`)) throw new Error(`plugin ${name} may only provide actions named ${name}.*, not ${action}`)
            local.register(action, handler as never)
          },
          mqtt: {
            consume: (filter, handler) => mqtt.consume(name, filter, handler),
            authorize: (authority) => mqtt.authorize(authority),
            publish: (topic, payload, options) => mqtt.publish(topic, payload, options),
            grant: (client) => mqtt.grant(client),
          },
          realtime: realtime.forPlugin(name),
          router: () => pluginRouter(base, name),
          mount: (router) => void routers.push(router),
        }
        await plugin.setup(ctx)
        hosted.push({ plugin, dir, ctx, status: { status: 'down', detail: 'starting' } })
      }
      for (const router of routers) app.use(router)
    } catch (error) {
      // A plugin refused its configuration. Nothing listens or runs yet: close what step 2 opened,
      // so that a refused start-up leaves no connection (nor an ephemeral SQLite file) behind.
      await Promise.allSettled([bus.stop(), registry.close(), cache.close(), db.close()])
      throw error
    }

    kernel = new Kernel(config, log, db, cache, bus, outbox, app, hosted, metrics, ipLimiter, mqtt, registry, realtime, tokens, gateway)
    try {
      // 5. Listen at once, so probes see "starting"; /api answers 503 until ready.
      kernel.listen()
      // 6. Connect: an unreachable database or Redis stops start-up with the variable's name.
      await db.ping().catch((e) => {
        throw new ConfigError([`DATABASE_URL: cannot reach the database (${e?.cause?.message ?? e?.message ?? e})`])
      })
      await cache.ping().catch((e) => {
        throw new ConfigError([`REDIS_URL: cannot reach Redis (${e?.message ?? e})`])
      })
      // 6b. Join the registry (not ready yet), so owners elsewhere are known before plugins start.
      await registry.join({ id: kernel.instanceId, url: kernel.advertisedUrl, plugins: kernel.plugins, ready: false }).catch((e) => {
        throw new ConfigError([`REDIS_URL: the registry cannot reach Redis (${e?.message ?? e})`])
      })
      // 7. Migrate: the kernel's tables, then each plugin's, for the active dialect.
      await db.migrate(join(KERNEL_MIGRATIONS, db.dialect), '__migrations_kernel')
      for (const h of hosted) {
        const folder = join(h.dir, 'migrations', db.dialect)
        if (existsSync(folder)) await db.migrate(folder, `__migrations_${h.plugin.name.replace(/-/g, '_')}`)
      }
      // 8. Start realtime (plugins may emit from start), plugins dependencies first, then the event flow.
      await realtime.start()
      for (const h of hosted) {
        await h.plugin.start?.(h.ctx)
        h.status = { status: 'up' }
      }
      await bus.start()
      outbox.start()
      await mqtt.start().catch((e) => {
        throw new ConfigError([`${config.MQTT_URL ? 'MQTT_URL' : 'MQTT_PORT'}: cannot start MQTT (${e?.message ?? e})`])
      })
      // 9. Ready.
      kernel.started = true
      kernel.accepting = true
      await registry.setReady(true)
      log.info({ port: kernel.port, mqttPort: mqtt.port || undefined, plugins: kernel.plugins, gateway: gateway ? true : undefined, database: db.dialect, cache: config.REDIS_URL ? 'redis' : 'memory', realtime: realtime.adapterKind, bus: config.EVENT_BUS, advertised: kernel.advertisedUrl }, 'tessera ready')
      return kernel
    } catch (error) {
      await kernel.stop().catch(() => {})
      throw error
    }
  }

  private listen() {
    this.server = serveApp(this.app, {
      config: this.config,
      log: this.log,
      metrics: this.metrics,
      ipLimiter: this.ipLimiter,
      accepting: () => this.accepting,
      realtime: this.realtime.edge,
      tokens: this.tokens,
      gateway: this.gateway,
    })
  }

  async readiness(): Promise<Readiness> {
    const plugins: Readiness['plugins'] = {}
    await Promise.all([
      this.db.ping().then(
        () => (plugins.database = { status: 'up' }),
        (e) => (plugins.database = { status: 'down', detail: String(e?.message ?? e) }),
      ),
      this.cache.ping().then(
        () => (plugins.cache = { status: 'up' }),
        (e) => (plugins.cache = { status: 'down', detail: String(e?.message ?? e) }),
      ),
      Promise.resolve().then(() => {
        if (this.mqtt.inUse) plugins.mqtt = this.mqtt.health()
      }),
      ...this.hosted.map(async (h) => {
        if (h.status.status !== 'up' || !h.plugin.health) return void (plugins[h.plugin.name] = h.status)
        plugins[h.plugin.name] = await h.plugin.health(h.ctx).catch((e) => ({ status: 'down' as const, detail: String(e?.message ?? e) }))
      }),
    ])
    if (this.gateway) plugins.gateway = { status: 'up' }
    return { started: this.started, accepting: this.accepting, plugins, ...(this.gateway ? { owners: this.gateway.owned() } : {}) }
  }

  /**
   * Graceful stop: not ready → withdraw from the registry → hand realtime clients over (they
   * reconnect elsewhere) → stop accepting and drain in-flight requests → stop the event flow → stop
   * plugins, last started first → close realtime → close connections. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown() {
    this.accepting = false
    const t0 = Date.now()
    // Others stop sending calls here before the drain, so none arrives at a closing door. An
    // unreachable registry does not hold the shutdown up: the entry then expires with its TTL.
    const withdrawn = this.registry.withdraw().catch((error) => this.log.warn({ err: error }, 'could not withdraw from the registry'))
    await Promise.race([withdrawn, Bun.sleep(1_000)])
    // Before draining: long-polling requests would otherwise hold the drain for a ping interval.
    this.realtime.disconnectAll()
    if (this.server) {
      const server = this.server
      const drained = server.stop(false)
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.config.SHUTDOWN_TIMEOUT_MS).unref())
      if ((await Promise.race([drained, timeout])) === 'timeout') {
        this.log.warn({ pending: server.pendingRequests }, 'in-flight requests did not finish in time; closing them')
        await server.stop(true)
      }
    }
    await this.mqtt.stop().catch((error) => this.log.error({ err: error }, 'MQTT did not stop cleanly'))
    await this.outbox.stop()
    await this.bus.stop()
    for (const h of [...this.hosted].reverse()) {
      h.status = { status: 'down', detail: 'stopped' }
      await h.plugin.stop?.(h.ctx).catch((error) => this.log.error({ err: error, plugin: h.plugin.name }, 'plugin did not stop cleanly'))
    }
    await this.realtime.stop().catch((error) => this.log.error({ err: error }, 'realtime did not stop cleanly'))
    await this.registry.close().catch(() => {})
    await this.cache.close().catch(() => {})
    await this.db.close().catch(() => {})
    this.log.info({ ms: Date.now() - t0 }, 'tessera stopped')
  }
}

function envelope(source: string, type: string, payload: unknown): EventEnvelope {
  return { id: Bun.randomUUIDv7(), type, source, payload, occurredAt: new Date().toISOString(), headers: {} }
}

function readPluginSettings(selected: Discovered[], env: Record<string, string | undefined>) {
  const configs = new Map<string, unknown>()
  const problems: string[] = []
  for (const { plugin } of selected) {
    try {
      configs.set(plugin.name, readSettings(plugin.settings ?? {}, env))
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems)
      else throw e
    }
  }
  if (problems.length) throw new ConfigError(problems)
  return configs
}
