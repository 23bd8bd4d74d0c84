import type { Deliver, EventBus, EventEnvelope } from './port'

/**
 * The in-process bus: publishing delivers to the local consumers and resolves once each has
 * settled, so the relay marks an outbox row published only after its consumers are done. A crash
 * before that leaves the row unpublished, and the next start delivers it again.
 */
export function inProcessBus(): EventBus {
  const consumers = new Map<string, { consumer: string; deliver: Deliver }[]>()
  let running = false

  return {
    async publish(event: EventEnvelope) {
      if (!running) throw new Error('the event bus is not running')
      await Promise.all((consumers.get(event.type) ?? []).map((c) => c.deliver(event)))
    },
    subscribe(consumer, type, deliver) {
      const list = consumers.get(type) ?? []
      if (list.some((c) => c.consumer === consumer)) throw new Error(`${consumer} already subscribes to ${type}`)
      consumers.set(type, [...list, { consumer, deliver }])
    },
    async start() {
      running = true
    },
    async stop() {
      running = false
    },
  }
}
