/**
 * Load generator for scripts/bench/http.ts. It runs in its own process so its CPU time is not
 * charged to the server under test.
 *
 *   bun scripts/bench/load.ts '{"client":"fetch","url":"http://127.0.0.1:3000/","headers":{},"concurrency":64,"warmupMs":2000,"durationMs":10000}'
 *
 * Opens `concurrency` keep-alive connections (fetch loops, or raw sockets with client "socket"), each
 * with one request in flight at a time, discards the warm-up, then records every request
 * completed inside the measured window and prints one JSON line (LoadResult) on stdout.
 */
import type { Socket } from 'bun'

export type LoadClient = 'fetch' | 'socket'

export interface LoadConfig {
  /** fetch (default): Bun's fetch; socket: a minimal HTTP/1.1 client on Bun.connect, far cheaper in CPU. */
  client?: LoadClient
  url: string
  headers: Record<string, string>
  concurrency: number
  warmupMs: number
  durationMs: number
  /** When given, the server's CPU use over the measured window is read from /proc and reported. */
  serverPid?: number
}

export interface LoadResult {
  /** 2xx responses completed inside the measured window. */
  ok: number
  /** Non-2xx responses and network failures inside the measured window. */
  errors: number
  seconds: number
  /** 2xx responses per second; errors are excluded so fast failures cannot inflate throughput. */
  rps: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** CPU the load generator used during the window, in % of one core (all its threads). */
  cpuPercent: number
  /** The same for the process serverPid; null when not asked for or /proc is unavailable. */
  serverCpuPercent: number | null
}

// 64 sub-buckets per power of two: a reported latency is within 0.8 % of the true one.
const SUB_BITS = 6
const SUB_COUNT = 1 << SUB_BITS
const MAX_MICROS = 2 ** 31 - 1

/** Log-linear latency histogram in microseconds: a fixed 6.5 KB however many requests are recorded. */
class LatencyHistogram {
  private readonly counts = new Uint32Array((32 - SUB_BITS) * SUB_COUNT)
  total = 0
  maxMs = 0

  record(ms: number): void {
    const micros = Math.min(MAX_MICROS, Math.max(0, Math.round(ms * 1000)))
    this.counts[bucketOf(micros)]++
    this.total++
    if (ms > this.maxMs) this.maxMs = ms
  }

  /** The latency (ms) at quantile q in [0, 1], as the middle of the bucket holding that rank. */
  quantileMs(q: number): number {
    if (this.total === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.total))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]
      if (seen >= rank) return bucketMiddleMicros(i) / 1000
    }
    return this.maxMs
  }
}

/** Values below 2 * SUB_COUNT get exact buckets; above, each power of two is split into SUB_COUNT. */
function bucketOf(micros: number): number {
  if (micros < 2 * SUB_COUNT) return micros
  const shift = 31 - Math.clz32(micros) - SUB_BITS
  return shift * SUB_COUNT + (micros >>> shift)
}

function bucketMiddleMicros(index: number): number {
  if (index < 2 * SUB_COUNT) return index
  const shift = Math.floor(index / SUB_COUNT) - 1
  const low = (index - shift * SUB_COUNT) << shift
  return low + (1 << shift) / 2
}

type Phase = 'warmup' | 'measure' | 'done'

interface LoadState {
  phase: Phase
  measureStart: number
  errors: number
  histogram: LatencyHistogram
}

/** Only requests that both start and finish inside the measured window count. */
function record(state: LoadState, started: number, ok: boolean): void {
  if (state.phase !== 'measure' || started < state.measureStart) return
  if (ok) state.histogram.record(performance.now() - started)
  else state.errors++
}

const isSuccess = (status: number) => status >= 200 && status < 300

/** One keep-alive fetch connection: request, drain the body, record, repeat until the window closes. */
async function fetchLoop(config: LoadConfig, state: LoadState): Promise<void> {
  while (state.phase !== 'done') {
    const started = performance.now()
    let ok = false
    try {
      const response = await fetch(config.url, { headers: config.headers })
      await response.arrayBuffer()
      ok = isSuccess(response.status)
    } catch {
      ok = false
    }
    record(state, started, ok)
  }
}

/** One raw keep-alive HTTP/1.1 connection, reopened whenever the server or the network closes it. */
async function socketLoop(config: LoadConfig, state: LoadState): Promise<void> {
  const url = new URL(config.url)
  const request = Buffer.from(requestText(url, config.headers), 'latin1')
  while (state.phase !== 'done') {
    const started = performance.now()
    try {
      await driveSocket(url, request, state)
    } catch {
      record(state, started, false)
      await Bun.sleep(10) // a refused connection fails instantly; do not spin
    }
  }
}

function requestText(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** Sends one request at a time on a socket until the window closes; resolves when the socket closes. */
function driveSocket(url: URL, request: Buffer, state: LoadState): Promise<void> {
  let received: Buffer | undefined
  let started = 0
  let inFlight = false
  // The previous response arrived, so the previous request left the send buffer: a write of a few
  // hundred bytes is always taken whole and needs no drain handling.
  const send = (socket: Socket) => {
    if (state.phase === 'done') return void socket.end()
    started = performance.now()
    inFlight = true
    socket.write(request)
  }
  return new Promise((resolve, reject) => {
    Bun.connect({
      hostname: url.hostname,
      port: Number(url.port || 80),
      socket: {
        open: send,
        data(socket, chunk) {
          received = received ? Buffer.concat([received, chunk]) : chunk
          const response = parseResponse(received)
          if (!response) return
          received = undefined // requests are not pipelined, so nothing follows a complete response
          inFlight = false
          record(state, started, isSuccess(response.status))
          if (response.close) socket.end()
          else send(socket)
        },
        end: (socket) => void socket.end(),
        close() {
          if (inFlight) record(state, started, false)
          resolve()
        },
        connectError: (_socket, error) => reject(error),
      },
    }).catch(reject)
  })
}

const CRLF = Buffer.from('\r\n')
const HEAD_END = Buffer.from('\r\n\r\n')

interface ParsedResponse {
  status: number
  /** The server will close the connection after this response. */
  close: boolean
}

/** The status of a complete HTTP/1.1 response in `buffer`, or null while more bytes are needed. */
function parseResponse(buffer: Buffer): ParsedResponse | null {
  const headEnd = buffer.indexOf(HEAD_END)
  if (headEnd < 0) return null
  const head = buffer.toString('latin1', 0, headEnd)
  const status = Number(head.slice(9, 12))
  const bodyStart = headEnd + HEAD_END.length
  const close = /\r\nconnection:\s*close/i.test(head)
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1]
  if (length !== undefined) return buffer.length >= bodyStart + Number(length) ? { status, close } : null
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return chunkedBodyComplete(buffer, bodyStart) ? { status, close } : null
  // No length and not chunked: the body (if any) runs to the end of the connection, so close it.
  return { status, close: close || (status !== 204 && status !== 304) }
}

function chunkedBodyComplete(buffer: Buffer, offset: number): boolean {
  for (let at = offset; ; ) {
    const lineEnd = buffer.indexOf(CRLF, at)
    if (lineEnd < 0) return false
    const size = parseInt(buffer.toString('latin1', at, lineEnd), 16)
    if (Number.isNaN(size)) return true // malformed: stop waiting, the status decides
    if (size === 0) return buffer.indexOf(HEAD_END, lineEnd) >= 0 // last chunk, then optional trailers
    at = lineEnd + CRLF.length + size + CRLF.length
    if (at > buffer.length) return false
  }
}

export async function runLoad(config: LoadConfig): Promise<LoadResult> {
  const state: LoadState = { phase: 'warmup', measureStart: 0, errors: 0, histogram: new LatencyHistogram() }
  const loop = config.client === 'socket' ? socketLoop : fetchLoop
  const loops = Array.from({ length: config.concurrency }, () => loop(config, state))

  await Bun.sleep(config.warmupMs)
  state.phase = 'measure'
  state.measureStart = performance.now()
  const cpuBefore = process.cpuUsage()
  const serverCpuBefore = await readCpuSeconds(config.serverPid)
  await Bun.sleep(config.durationMs)
  state.phase = 'done'
  const seconds = (performance.now() - state.measureStart) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  const serverCpuAfter = await readCpuSeconds(config.serverPid)
  // A request stuck on a hung server must not hold the result back.
  await Promise.race([Promise.all(loops), Bun.sleep(5_000)])

  const { histogram } = state
  return {
    ok: histogram.total,
    errors: state.errors,
    seconds,
    rps: histogram.total / seconds,
    p50Ms: histogram.quantileMs(0.5),
    p99Ms: histogram.quantileMs(0.99),
    maxMs: histogram.maxMs,
    cpuPercent: ((cpu.user + cpu.system) / 1e6 / seconds) * 100,
    serverCpuPercent:
      serverCpuBefore === null || serverCpuAfter === null ? null : ((serverCpuAfter - serverCpuBefore) / seconds) * 100,
  }
}

// Linux reports /proc/<pid>/stat CPU times in ticks of 1/100 s on every mainstream architecture.
const CLOCK_TICKS_PER_SECOND = 100

/** User + system CPU seconds of a process, from /proc/<pid>/stat; null without a pid or /proc. */
async function readCpuSeconds(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null
  try {
    const stat = await Bun.file(`/proc/${pid}/stat`).text()
    // Fields after the parenthesised command name start at field 3 (state); utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return null
  }
}

function parseConfig(raw: string | undefined): LoadConfig {
  if (!raw) throw new Error('load.ts: pass the LoadConfig as one JSON argument')
  const config = { client: 'fetch', headers: {}, ...JSON.parse(raw) } as LoadConfig
  const positive = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n > 0
  if (typeof config.url !== 'string') throw new Error('load.ts: url must be a string')
  if (config.client !== 'fetch' && config.client !== 'socket') throw new Error('load.ts: client must be fetch or socket')
  if (config.client === 'socket' && !config.url.startsWith('http://')) throw new Error('load.ts: the socket client speaks plain http only')
  if (!positive(config.concurrency) || !positive(config.durationMs) || !(config.warmupMs >= 0)) {
    throw new Error('load.ts: concurrency and durationMs must be > 0, warmupMs >= 0')
  }
  return config
}

if (import.meta.main) {
  const result = await runLoad(parseConfig(process.argv[2]))
  await Bun.write(Bun.stdout, `${JSON.stringify(result)}\n`)
  process.exit(0) // sockets still open on a hung server would keep the process alive
}
