/**
 * A TCP port free on 127.0.0.1 right now (for child servers in tests and benchmarks). Picked at
 * random below the kernel's ephemeral range (32768+ on Linux), where outgoing connections take
 * their local ports: a port from port 0 is an ephemeral one, and on a busy machine a client socket
 * could take it before the child server binds it.
 */
const LOW = 20_000
const HIGH = 32_000
/**
 * Ports this process has handed out. A caller binds its port later (a child server, a second or so
 * after it is started), and the split launcher asks for all its children's ports before any of them
 * listens: two of them could draw the same one, and one child then failed with EADDRINUSE.
 */
const handedOut = new Set<number>()

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW))
    if (handedOut.has(port) || !bindable(port)) continue
    handedOut.add(port)
    return port
  }
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  handedOut.add(port)
  return port
}

function bindable(port: number): boolean {
  try {
    Bun.listen({ hostname: '127.0.0.1', port, socket: { data() {} } }).stop(true)
    return true
  } catch {
    return false
  }
}
