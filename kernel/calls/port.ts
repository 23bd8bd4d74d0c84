/**
 * Calls between plugins. A caller writes `ctx.call('<plugin>.<action>', input)`; the transport
 * decides whether that is a function call in this process or a request to the process that hosts
 * the plugin. Callers never know which.
 */

export interface CallMeta {
  /** The calling plugin. */
  caller: string
  /** Absolute deadline (epoch ms) after which the caller no longer waits. */
  deadline: number
  /** Key that makes a retried call have one effect. */
  idempotencyKey?: string
  /** W3C trace context of the caller. */
  traceparent?: string
  /** Aborted when the caller stops waiting (its deadline passed). */
  signal?: AbortSignal
}

export type ActionHandler = (input: unknown, meta: CallMeta) => Promise<unknown>

export interface CallTransport {
  /** Whether this transport can reach `action` now. */
  reaches(action: string): boolean
  invoke(action: string, input: unknown, meta: CallMeta): Promise<unknown>
}
