/**
 * The baseline broker for scripts/bench/ingest.ts: a bare aedes (MQTT 3.1.1) that lets any client
 * in and authorizes every publish and subscribe, with nothing behind it. Runs in its own process so
 * its CPU time is its own, the way the Tessera server's is.
 *
 *   bun scripts/bench/raw-broker.ts [port]     # port 0 (default) = a free one
 *
 * Prints one JSON line `{"event":"listening","port":N}` on stdout once it listens, then runs until SIGTERM / SIGINT.
 * Sockets get the same setNoDelay(true) as the embedded broker in kernel/mqtt/embedded.ts.
 */
import { createServer, type Socket } from 'node:net'
import { Aedes } from 'aedes'

const requested = Number(process.argv[2] ?? 0)
if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
  console.error(`raw-broker: port must be an integer from 0 to 65535 (got ${process.argv[2]})`)
  process.exit(2)
}

const broker = await Aedes.createBroker()
const sockets = new Set<Socket>()
const server = createServer((socket) => {
  socket.setNoDelay(true)
  sockets.add(socket)
  socket.once('close', () => sockets.delete(socket))
  broker.handle(socket)
})

await new Promise<void>((resolve, reject) => {
  server.once('error', reject)
  server.listen(requested, '127.0.0.1', () => resolve())
})
const { port } = server.address() as { port: number }
await Bun.write(Bun.stdout, `${JSON.stringify({ event: 'listening', port })}\n`)

function stop() {
  server.close()
  for (const socket of sockets) socket.destroy()
  broker.close(() => process.exit(0))
  // aedes waits for nothing we care about here; do not linger if it does.
  setTimeout(() => process.exit(0), 1000).unref()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
