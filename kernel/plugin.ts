/**
 * The plugin contract. A plugin is data first: a name, a version, what it depends on, the settings
 * it reads and the tables it owns; then `setup`, which registers what it offers (routes, actions,
 * event handlers) without doing I/O, and optional `start`/`stop`/`health`, which do the I/O.
 */
import type { AnyElysia } from 'elysia'
import type { ActionInput, ActionName, ActionOutput, EventPayload, EventType } from '../shared/contracts'
import type { Cache } from './cache'
import type { Call } from './calls'
import type { CallMeta } from './calls/port'
import type { Spec, Values } from './config'
import type { Database, Db, Schema, Tables } from './db'
import type { ConsumerOptions, EventEnvelope } from './events/port'
import type { Identity } from './http/identity'
import type { PluginMetrics } from './http/metrics'
import type { PluginRouter } from './http/router'
import type { Logger } from './log'
import type { MqttAuthority, MqttGrant, MqttHandler } from './mqtt'
import type { Realtime } from './realtime'

export interface HealthReport {
  status: 'up' | 'down'
  detail?: string
}

export interface PluginContext<S extends Spec = Spec, T extends Schema = Schema> {
  readonly name: string
  /** This plugin's own settings, read from the environment and validated at start. */
  readonly config: Values<S>
  readonly nodeEnv: 'development' | 'test' | 'production'
  readonly log: Logger
  /** The database, and this plugin's tables materialised for its dialect. */
  readonly db: Database
  readonly tables: Tables<T>
  readonly cache: Cache
  readonly metrics: PluginMetrics
  /** Token signing, verification and revocation, shared by every process. */
  readonly identity: Identity
  readonly events: {
    /** Records the event in the current transaction (or its own); it is delivered after commit. */
    publish<E extends EventType>(type: E, payload: EventPayload<E>): Promise<void>
    /** The same for many events of one type at once (one write). */
    publishAll<E extends EventType>(type: E, payloads: EventPayload<E>[]): Promise<void>
    /**
     * Handles `type` exactly once per event, inside a transaction (`tx`), with retries and
     * dead-lettering. `{ idempotent: true }`: the handler has the same effect however often and in
     * whatever sequence an event reaches it, so no processed-event record is written for it (one row
     * per event saved); a repeated delivery is handled again (ConsumerOptions).
     */
    on<E extends EventType>(type: E, handler: (event: EventEnvelope<EventPayload<E>>, tx: Db) => Promise<void>, options?: ConsumerOptions): void
    /**
     * The same guarantees as `on` (once per event, in a transaction, retries, dead letter), for a
     * handler that takes the events that arrived together at once, as they arrived, repeats left
     * out: one set of statements per batch instead of per event, for busy feeds. When a batch
     * fails, each of its events is handled again alone, so `events` may hold a single one.
     */
    onBatch<E extends EventType>(type: E, handler: (events: EventEnvelope<EventPayload<E>>[], tx: Db) => Promise<void>, options?: ConsumerOptions): void
    /**
     * Watches `type` best-effort, for feeds where a missed or repeated event does no harm (live
     * dashboards): `handler` runs after the event committed, without a transaction, processed-event
     * record, retries or dead letter; a failure is logged and counted, and never holds up other
     * consumers. It costs no database write per event, unlike `on`. With a distributed bus it is
     * one consumer group per plugin, like `on`.
     */
    observe<E extends EventType>(type: E, handler: (event: EventEnvelope<EventPayload<E>>) => void | Promise<void>): void
  }
  /** Calls an action of another (or this) plugin, wherever it is hosted. */
  readonly call: Call
  /** Offers one of this plugin's actions (named `<plugin>.<action>` in shared/contracts). */
  provide<N extends ActionName>(name: N, handler: (input: ActionInput<N>, meta: CallMeta) => Promise<ActionOutput<N>>): void
  /** MQTT: consume topics (acknowledged once the handler resolves) and decide who may connect. */
  readonly mqtt: {
    consume(filter: string, handler: MqttHandler): void
    authorize(authority: MqttAuthority): void
    publish(topic: string, payload: string | Buffer, options?: { qos?: 0 | 1; retain?: boolean }): Promise<void>
    /** Tells an external broker that this client may log in and publish under these filters. */
    grant(client: MqttGrant): Promise<void>
  }
  /**
   * Socket.IO namespaces (kernel/realtime/port.ts): register them and their events in `setup`;
   * connections need an access token (and a role when the namespace names some).
   */
  readonly realtime: Realtime
  /** A router under `/api/v1/<plugin>`, tagged for OpenAPI, that understands `auth` and `creates`. */
  router(): PluginRouter
  /** Mounts a router built from `router()`. */
  mount(router: AnyElysia): void
}

export interface PluginManifest<S extends Spec = Spec, T extends Schema = Schema> {
  name: string
  version: string
  /** Plugins that must be set up and started before this one. */
  dependsOn?: string[]
  description?: string
  settings?: S
  /** Tables this plugin owns; their migrations live in `migrations/<dialect>` beside plugin.ts. */
  schema?: T
  setup(ctx: PluginContext<S, T>): void | Promise<void>
  start?(ctx: PluginContext<S, T>): Promise<void>
  stop?(ctx: PluginContext<S, T>): Promise<void>
  health?(ctx: PluginContext<S, T>): Promise<HealthReport>
}

export function definePlugin<S extends Spec = {}, T extends Schema = {}>(manifest: PluginManifest<S, T>): PluginManifest<S, T> {
  return manifest
}

export type AnyPlugin = PluginManifest<any, any>

/**
 * State a plugin builds in `setup` and uses in `start`/`stop`, kept per context (not in a module
 * variable), so two kernels in one process (tests, or several hosts) never share it.
 */
export function pluginState<T>() {
  const states = new WeakMap<object, T>()
  return {
    set: (ctx: object, state: T) => void states.set(ctx, state),
    get(ctx: object): T {
      const state = states.get(ctx)
      if (!state) throw new Error('plugin state read before setup')
      return state
    },
  }
}
