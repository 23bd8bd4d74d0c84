/**
 * Frames for one WebSocket written together: the engine sends every packet with its own
 * `ws.send`, and outside Bun's message handler each send is a write of its own to the kernel. A
 * batch of stored messages gives a socket its ack and several `message:new`s at once; here they
 * are queued and written at the end of the event-loop turn in one corked burst per socket, in the
 * sequence they were sent in. The engine holds this face instead of the socket (it uses send, close,
 * readyState and data).
 */
import type { ServerWebSocket } from 'bun'

type Frame = string | ArrayBufferLike | ArrayBufferView

const queued = new Set<CorkedWebSocket>()
let scheduled = false

function flushAll() {
  scheduled = false
  for (const socket of queued) socket.flush()
  queued.clear()
}

export class CorkedWebSocket {
  private frames: Frame[] = []

  constructor(private readonly ws: ServerWebSocket<unknown>) {}

  get readyState() {
    return this.ws.readyState
  }

  get data() {
    return this.ws.data
  }

  send(frame: Frame): number {
    this.frames.push(frame)
    queued.add(this)
    if (!scheduled) {
      scheduled = true
      setImmediate(flushAll)
    }
    return 0
  }

  /** Writes the queued frames, all in one corked write; frames for a socket that closed meanwhile are dropped. */
  flush() {
    const frames = this.frames
    if (frames.length === 0) return
    this.frames = []
    const ws = this.ws
    if (ws.readyState !== 1) return
    if (frames.length === 1) ws.send(frames[0] as never)
    else
      ws.cork(() => {
        for (const frame of frames) ws.send(frame as never)
      })
  }

  close(code?: number, reason?: string) {
    this.flush()
    queued.delete(this)
    this.ws.close(code, reason)
  }
}
