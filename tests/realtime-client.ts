/**
 * Real socket.io-client sockets for the realtime suites: connect with a token and wait for the
 * outcome, collect what the server emits, and wait for it.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client'
import { eventually } from './harness'

export type Client = Socket & { received: (event: string) => any[] }
const open: Socket[] = []

/** A connected client of `namespace`; every server emit is recorded for `received(event)`. */
export async function connect(url: string, namespace: string, token: string | undefined, options: Partial<ManagerOptions & SocketOptions> = {}): Promise<Client> {
  const socket = io(url + namespace, { auth: token === undefined ? {} : { token }, transports: ['websocket'], reconnectionDelay: 200, reconnectionDelayMax: 200, ...options }) as Client
  open.push(socket)
  const log = new Map<string, any[]>()
  socket.onAny((event: string, data: unknown) => void (log.get(event) ?? log.set(event, []).get(event)!).push(data))
  socket.received = (event) => log.get(event) ?? []
  await new Promise<void>((resolve, reject) => {
    const refused = (error: Error) => {
      socket.close()
      reject(error)
    }
    // Only the first connection's refusal closes the client: a failed reconnect later (say while a
    // server shuts down) must leave it reconnecting.
    socket.once('connect', () => {
      socket.off('connect_error', refused)
      resolve()
    })
    socket.once('connect_error', refused)
  })
  return socket
}

/** The connect_error a refused handshake produces (message, and `data` with the reason). */
export async function refusal(url: string, namespace: string, token: string | undefined, options: Partial<ManagerOptions & SocketOptions> = {}) {
  try {
    await connect(url, namespace, token, { reconnection: false, ...options })
  } catch (error) {
    return error as Error & { data?: { code: string; message: string } }
  }
  throw new Error(`the handshake to ${namespace} was accepted`)
}

/** Waits until `client` has received `count` of `event`, and returns them all. */
export async function waitFor(client: Client, event: string, count = 1, ms = 5_000) {
  await eventually(async () => client.received(event).length >= count, ms)
  return client.received(event)
}

export function closeAll() {
  for (const socket of open.splice(0)) socket.close()
}
