/**
 * The event bus port. The kernel writes events to the outbox in the same transaction as the state
 * change; the relay hands them to a bus; the bus delivers each event at least once to every
 * consumer subscribed to its type. Consumers are wrapped by the kernel (delivery.ts) so that a
 * duplicate has no second effect and a failing one is retried, then dead-lettered.
 */

export interface EventEnvelope<T = unknown> {
  id: string
  type: string
  /** The plugin that published it. */
  source: string
  payload: T
  occurredAt: string
  /** Trace context and other metadata (W3C traceparent, request id). */
  headers: Record<string, string>
}

/** How the kernel delivers to one consumer (`ctx.events.on` / `onBatch`). */
export interface ConsumerOptions {
  /**
   * The handler's effect is the same however often, and in whatever sequence, an event reaches it
   * (a projection that keeps the newest event id per row and ignores older ones, say). The kernel
   * then writes no processed-event record for it: one row per event, which for a busy projection
   * was a tenth of PostgreSQL's work (BENCHMARKS.md, MQTT ingestion, seventh session). Retries and
   * the dead letter stay; a repeated delivery counts as handled, not as a duplicate.
   */
  idempotent?: boolean
}

/** Handles one event for one consumer; resolves when it is settled (handled or dead-lettered). */
export type Deliver = (event: EventEnvelope) => Promise<void>

export interface EventBus {
  /**
   * Hands `event` over. When it resolves, delivery to every consumer subscribed to its type is
   * assured even if this process dies; when it rejects, the relay will publish it again.
   */
  publish(event: EventEnvelope): Promise<void>
  /** Registers `consumer` for `type`. One consumer name is one queue: replicas share its load. */
  subscribe(consumer: string, type: string, deliver: Deliver): void
  start(): Promise<void>
  stop(): Promise<void>
}
