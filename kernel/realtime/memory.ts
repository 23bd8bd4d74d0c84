import type { Namespace } from 'socket.io'
import { Adapter, type BroadcastOptions, SessionAwareAdapter } from 'socket.io-adapter'
import type { RealtimeAdapter } from './port'

/**
 * One process: Socket.IO's in-memory adapter. For a namespace with connection state recovery it is
 * the session-aware one, which keeps emitted packets so that a reconnecting client gets what it
 * missed; a namespace without recovery gets the plain one, which keeps nothing. Two changes to them:
 *
 * - An emit that no socket can receive, now or on recovery (no socket in its rooms, no session
 *   waiting to be recovered), is dropped before it is encoded or kept. A feed such as /live emits
 *   for every stock level a sensor batch changes, thousands a second, usually with nobody watching.
 * - The session-aware adapter keeps at most `maxPackets` (plus a tenth, between trims): it kept
 *   every packet of the recovery window, and at 8,000 sensor readings/s with nobody connected the
 *   server grew by 14 MB/s (BENCHMARKS.md, MQTT ingestion, sixth session). A client whose last
 *   packet was trimmed is not recovered: it starts a new session, as with the Redis stream's MAXLEN.
 */
export function memoryAdapter(recovers: (namespace: string) => boolean, maxPackets: number): RealtimeAdapter {
  const recovering = new Map<string, RecoveringAdapter>()
  // Socket.IO runs `new adapter(nsp)` per namespace; a constructor that returns an object yields that object.
  function adapter(nsp: Namespace) {
    if (!recovers(nsp.name)) return new AudienceAdapter(nsp)
    const made = new RecoveringAdapter(nsp, maxPackets)
    recovering.set(nsp.name, made)
    return made
  }
  return { kind: 'memory', adapter, kept: () => [...recovering].map(([name, a]) => [name, a.kept]), close: async () => {} }
}

/** Whether some socket of this process is in one of the emit's rooms (any socket, for an emit to the whole namespace). */
function reachesSomeone(adapter: Adapter, { rooms }: BroadcastOptions) {
  // Every socket is in the room of its own id, so `sids` holds every socket.
  if (rooms.size === 0) return adapter.sids.size > 0
  for (const room of rooms) if (adapter.rooms.get(room)?.size) return true
  return false
}

class AudienceAdapter extends Adapter {
  override broadcast(packet: unknown, opts: BroadcastOptions) {
    if (reachesSomeone(this, opts)) super.broadcast(packet, opts)
  }
}

/** What the session-aware adapter keeps (private in its typings). */
interface Kept {
  sessions: Map<string, unknown>
  packets: unknown[]
}

class RecoveringAdapter extends SessionAwareAdapter {
  private readonly own = this as unknown as Kept
  private readonly trimAt: number

  constructor(
    nsp: Namespace,
    private readonly maxPackets: number,
  ) {
    super(nsp)
    // Trimmed a tenth at a time: one splice per maxPackets / 10 emits, not one per emit.
    this.trimAt = maxPackets + Math.ceil(maxPackets / 10)
  }

  override broadcast(packet: unknown, opts: BroadcastOptions) {
    // A session is kept from its disconnect until Socket.IO's minute sweep finds it past the
    // recovery window (a recovered one too): until then, emits are kept for it.
    if (this.own.sessions.size === 0 && !reachesSomeone(this, opts)) return
    super.broadcast(packet, opts)
    const { packets } = this.own
    if (packets.length >= this.trimAt) packets.splice(0, packets.length - this.maxPackets)
  }

  /** Packets kept for recovery now. */
  get kept() {
    return this.own.packets.length
  }
}
