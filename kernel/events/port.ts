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
