import type { RealtimeAdapter } from './port'

/**
 * One process: Socket.IO's default in-memory adapter, which (with connection state recovery on)
 * keeps every emitted packet for the recovery window so a reconnecting client gets what it missed.
 */
export function memoryAdapter(): RealtimeAdapter {
  return { kind: 'memory', adapter: undefined, close: async () => {} }
}
