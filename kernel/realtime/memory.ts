import type { Namespace } from 'socket.io'
import { Adapter, SessionAwareAdapter } from 'socket.io-adapter'
import type { RealtimeAdapter } from './port'

/**
 * One process: Socket.IO's in-memory adapter. For a namespace with connection state recovery it is
 * the session-aware one, which keeps every emitted packet for the recovery window so a reconnecting
 * client gets what it missed; a namespace without recovery gets the plain one, which keeps nothing.
 */
export function memoryAdapter(recovers: (namespace: string) => boolean): RealtimeAdapter {
  // Socket.IO runs `new adapter(nsp)` per namespace; a constructor that returns an object yields that object.
  function adapter(nsp: Namespace) {
    return recovers(nsp.name) ? new SessionAwareAdapter(nsp) : new Adapter(nsp)
  }
  return { kind: 'memory', adapter, close: async () => {} }
}
