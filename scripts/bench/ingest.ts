/**
 * MQTT ingestion benchmark: Tessera's sensor ingestion (embedded aedes broker → batched database
 * transactions → PUBACK) against a bare aedes broker relaying the same QoS 1 load to one subscriber,
 * plus the publish → visible-over-HTTP lag below saturation, in one run.
 *
 *   bun scripts/bench/ingest.ts [--database sqlite|postgres|both] [--duration 10] [--warmup 3]
 *                               [--devices 500] [--rounds 1] [--max-in-flight 10] [--lag-fraction 0.5]
 *                               [--probe-ms 50] [--poll-ms 20] [--count-every 0] [--min-ratio 0.50]
 *                               [--max-lag-ms 250] [--warehouses 5] [--skus 200] [--lag-rate N]
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bun scripts/bench/ingest.ts
 *       (a PostgreSQL server to use; without --database it selects postgres)
 *   BENCH_SERVER_FLAGS="--cpu-prof-md --cpu-prof-dir=/tmp/prof" bun scripts/bench/ingest.ts
 *       (extra flags for the server's bun, e.g. a CPU profile written when it stops)
 *   BENCH_SERVER_LOG=/tmp/server.log BENCH_SERVER_LOG_LEVEL=debug bun scripts/bench/ingest.ts
 *       (keeps the server's whole output; at debug level, with each ingest batch's time per step)
 *   bun scripts/bench/ingest.ts --dashboards 1
 *       (that many managers' dashboards watch every warehouse on /live through the Tessera rounds,
 *       each receiving every stock:changed; without one the live feed costs nothing, since an emit
 *       nobody can receive is dropped)
 *   BENCH_PLUGINS=auth,inventory bun scripts/bench/ingest.ts
 *       (a diagnostic only: the server hosts just these plugins instead of every one, e.g. to see
 *       what the other consumers of inventory's events cost; the benchmark's figures use all)
 *
 * Per round and target (raw, then each database, alternately over the rounds):
 * - raw: scripts/bench/raw-broker.ts (a bare aedes, anyone may connect) in its own process, a bare
 *   mqtt.js QoS 1 subscriber to every readings topic in this process, and the load worker
 *   (scripts/bench/ingest-load.ts, its own process) with N made-up devices (iot/device.ts) keeping
 *   their in-flight window full: msgs/s = messages the subscriber received in the measured window.
 * - tessera <db>: `bun kernel/main.ts` on a fresh SQLite file or PostgreSQL schema, W warehouses,
 *   S SKUs, N devices provisioned over REST (iot/provision.ts), the same load: msgs/s = the growth
 *   of `inventory_readings_total{outcome="applied"}` (scraped from /metrics at the edges of the
 *   window) per second. Then a second phase paced at --lag-fraction of that rate (or at a fixed
 *   --lag-rate, to compare two builds at one load), during which a probe device publishes a +1
 *   delta for a dedicated SKU every --probe-ms, and a poller here reads GET
 *   /api/v1/inventory/stock for it (one request at a time, --poll-ms apart: each costs the server
 *   about 1.7 ms of CPU, so polling flat out would itself load it by a quarter of a core) until
 *   onHand shows each one: lag p50/p99 = publish → visible (to within one poll).
 *   The p99 of `inventory_ingest_lag_seconds` over that window (from its histogram buckets) is
 *   reported beside it, and so are the polls' response times (how the server answers HTTP while
 *   it ingests) and those of an fsync of 4 KiB in the temporary directory every 100 ms (how busy
 *   the machine's disk was: a slow lag phase beside slow fsyncs is the machine's).
 * Readings are `delta`s of ±1..3 on a random SKU (one in --count-every is a `count`; 0 = none).
 * --max-in-flight (publishes awaiting their PUBACK per device, the same for every target) defaults
 * to 10, i.e. 5,000 in flight for 500 devices. With iot/device.ts' default of 100 (50,000 in flight)
 * the figures come out about the same, but Tessera's ingest then works through the whole backlog
 * without yielding to I/O: it acknowledges (and answers HTTP, /metrics included) in bursts several
 * seconds apart, and a 10 s window holds only one or two of them, which makes the rates noisy.
 * Each target reports its best round by msgs/s and, separately, its round with the lowest lag p99.
 * Exit code: 0 every target passes, 1 a target fails, 2 the benchmark could not run or its numbers
 * do not add up (errors, rejected readings, applied != acknowledged).
 */
import { randomBytes } from 'node:crypto'
import { appendFileSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Subprocess } from 'bun'
import mqtt from 'mqtt'
import postgres from 'postgres'
import { io } from 'socket.io-client'
import { connectDevice, type Device } from '../../iot/device'
import { type DeviceCredentials, type Fleet, inventoryApi, provisionFleet } from '../../iot/provision'
import type { LoadWorkerConfig, RunCommand, RunResult } from './ingest-load.ts'
import { freePort } from '../free-port'
import { isRunning, stopChild } from './children'

const ROOT = join(import.meta.dir, '..', '..')
const READY_TIMEOUT_MS = 30_000
const STOP_GRACE_MS = 5_000
const UNLIMITED = '100000000'
const ADMIN = { email: 'bench-admin@example.com', password: 'bench-admin-password-1' }
const PREFIX = 'BENCH'
const PROBE_SKU = `${PREFIX}-PROBE`
const DEFAULT_POSTGRES = 'postgres://postgres@127.0.0.1:5432/test'
/** How often the lag phase times an fsync in the temporary directory (the disk's state beside the run). */
const DISK_PROBE_MS = 100
/** After the lag window, how long probe readings published in it may take to show up. */
const PROBE_SETTLE_MS = 60_000
const PROBE_MAX_IN_FLIGHT = 100_000
const SCRAPE_TIMEOUT_MS = 60_000
/** Above this share of one core the load worker, not the broker, was the limit. */
const SATURATED_CPU_PERCENT = 90
/** Above this share of all cores the machine was the limit of the raw run. */
const MACHINE_SATURATED = 0.9
/** CPU (% of one core) used by processes other than the benchmark's own beyond which a raw figure is suspect. */
const OTHERS_CPU_PERCENT = 25
/**
 * applied/s and acked/s measure one stream at its two ends over slightly different windows; when the
 * server acknowledges in bursts a few seconds apart they differ by the bursts at the window edges.
 */
const MAX_APPLIED_ACKED_GAP = 0.1

type DatabaseKind = 'sqlite' | 'postgres'

interface Options {
  databases: DatabaseKind[]
  postgresUrl: string
  durationSec: number
  warmupSec: number
  rounds: number
  devices: number
  warehouses: number
  skus: number
  maxInFlight: number
  lagFraction: number
  /** A fixed rate for the lag phase instead of --lag-fraction of the measured one (to compare builds at one load). */
  lagRate?: number
  probeMs: number
  pollMs: number
  countEvery: number
  minRatio: number
  maxLagMs: number
  /** Socket.IO clients watching /live (every warehouse) through each Tessera round. */
  dashboards: number
}

// ---------------------------------------------------------------------------------------------
// Options

function readOptions(): Options {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      database: { type: 'string' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '1' },
      devices: { type: 'string', default: '500' },
      warehouses: { type: 'string', default: '5' },
      skus: { type: 'string', default: '200' },
      'max-in-flight': { type: 'string', default: '10' },
      'lag-fraction': { type: 'string', default: '0.5' },
      'lag-rate': { type: 'string' },
      'probe-ms': { type: 'string', default: '50' },
      'poll-ms': { type: 'string', default: '20' },
      'count-every': { type: 'string', default: '0' },
      'min-ratio': { type: 'string', default: '0.50' },
      'max-lag-ms': { type: 'string', default: '250' },
      dashboards: { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const envUrl = process.env.BENCH_DATABASE_URL || undefined
  if (envUrl && !/^postgres(ql)?:\/\//.test(envUrl)) throw new Error('BENCH_DATABASE_URL must be a postgres:// URL')
  const database = values.database ?? (envUrl ? 'postgres' : 'sqlite')
  const databases: DatabaseKind[] =
    database === 'both' ? ['sqlite', 'postgres'] : database === 'sqlite' || database === 'postgres' ? [database] : fail(`--database must be sqlite, postgres or both (got ${database})`)
  const lagFraction = number('--lag-fraction', values['lag-fraction'])
  if (lagFraction >= 1) throw new Error('--lag-fraction must be below 1 (the lag phase runs below saturation)')
  return {
    databases,
    postgresUrl: envUrl ?? DEFAULT_POSTGRES,
    durationSec: number('--duration', values.duration),
    warmupSec: number('--warmup', values.warmup, true),
    rounds: integer('--rounds', values.rounds),
    devices: integer('--devices', values.devices),
    warehouses: integer('--warehouses', values.warehouses),
    skus: integer('--skus', values.skus),
    maxInFlight: integer('--max-in-flight', values['max-in-flight']),
    lagFraction,
    lagRate: values['lag-rate'] === undefined ? undefined : integer('--lag-rate', values['lag-rate']),
    probeMs: integer('--probe-ms', values['probe-ms']),
    pollMs: integer('--poll-ms', values['poll-ms'], true),
    countEvery: integer('--count-every', values['count-every'], true),
    minRatio: number('--min-ratio', values['min-ratio']),
    maxLagMs: number('--max-lag-ms', values['max-lag-ms']),
    dashboards: integer('--dashboards', values.dashboards, true),
  }
}

const USAGE = `usage: bun scripts/bench/ingest.ts [--database sqlite|postgres|both] [--duration 10] [--warmup 3] [--devices 500]
  [--rounds 1] [--warehouses 5] [--skus 200] [--max-in-flight 10] [--lag-fraction 0.5] [--probe-ms 50]
  [--poll-ms 20] [--count-every 0] [--min-ratio 0.50] [--max-lag-ms 250] [--lag-rate N] [--dashboards 0]
env: BENCH_DATABASE_URL=postgres://… (the PostgreSQL server; selects postgres when --database is not given)`

function fail(message: string): never {
  throw new Error(message)
}

function number(flag: string, raw: string, allowZero = false): number {
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) fail(`${flag} must be a positive number (got ${raw})`)
  return n
}

function integer(flag: string, raw: string, allowZero = false): number {
  const n = number(flag, raw, allowZero)
  if (!Number.isInteger(n)) fail(`${flag} must be an integer (got ${raw})`)
  return n
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is killed when this script ends, however it ends.

const children = new Set<Subprocess>()
/** Databases to drop and files to remove, also on SIGINT. */
const cleanups = new Set<() => Promise<void>>()

/** Keeps the last few KB of a child's output to explain a failure. */
class LogTail {
  private text = ''
  /** `file`: where to keep the whole output as well (BENCH_SERVER_LOG for the server's). */
  constructor(private readonly file?: string) {}
  append(chunk: string) {
    this.text = (this.text + chunk).slice(-4000)
    if (this.file) appendFileSync(this.file, chunk)
  }
  toString() {
    return this.text.trim()
  }
}

async function drainInto(stream: ReadableStream<Uint8Array>, log: LogTail) {
  const decoder = new TextDecoder()
  for await (const chunk of stream) log.append(decoder.decode(chunk, { stream: true }))
}

function spawnChild(cmd: string[], env: Record<string, string>) {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' })
  children.add(proc)
  void proc.exited.then(() => children.delete(proc))
  return proc
}



function killAllChildren() {
  for (const proc of children) if (isRunning(proc)) proc.kill('SIGKILL')
}

async function runCleanups() {
  const all = [...cleanups]
  cleanups.clear()
  await Promise.allSettled(all.map((c) => c()))
}


/** User + system CPU seconds of a process from /proc/<pid>/stat (ticks of 1/100 s); null without /proc. */
async function cpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await Bun.file(`/proc/${pid}/stat`).text()
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return null
  }
}

/** Busy CPU seconds of the whole machine (all cores) from /proc/stat; null without /proc. */
async function machineBusySeconds(): Promise<number | null> {
  try {
    const line = (await Bun.file('/proc/stat').text()).split('\n')[0]
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return (user + nice + system + irq + softirq + steal) / 100
  } catch {
    return null
  }
}

/**
 * CPU seconds of the PostgreSQL backends serving one Tessera server (its connections carry
 * application_name `appName`, from PGAPPNAME), by pid: load-independent, unlike readings/s.
 */
async function backendCpu(url: string, appName: string): Promise<Map<number, number> | null> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'tessera-bench-observer' } })
  try {
    const rows = await sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = ${appName}`
    const out = new Map<number, number>()
    for (const { pid } of rows) {
      const cpu = await cpuSeconds(pid)
      if (cpu === null) return null // not on this machine
      out.set(pid, cpu)
    }
    return out
  } catch {
    return null
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/** CPU seconds the backends used between two samples (a backend first seen in `after` started at 0). */
function backendCpuUsed(before: Map<number, number> | null, after: Map<number, number> | null): number | null {
  if (!before || !after) return null
  let used = 0
  for (const [pid, cpu] of after) used += cpu - (before.get(pid) ?? 0)
  return used
}

const percentOver = (before: number | null, after: number | null, seconds: number) =>
  before === null || after === null ? null : ((after - before) / seconds) * 100

/** Splits a child's stdout into JSON lines and hands them out in order. */
class JsonLines {
  private readonly queue: Record<string, unknown>[] = []
  private waiter?: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }
  private ended?: Error

  constructor(stream: ReadableStream<Uint8Array>, private readonly describeEnd: () => Promise<string>) {
    void this.read(stream)
  }

  private async read(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of stream) {
      buffer += decoder.decode(chunk, { stream: true })
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim()
        buffer = buffer.slice(nl + 1)
        if (!line.startsWith('{')) continue
        this.push(JSON.parse(line) as Record<string, unknown>)
      }
    }
    this.ended = new Error(await this.describeEnd())
    this.waiter?.reject(this.ended)
    this.waiter = undefined
  }

  private push(event: Record<string, unknown>) {
    if (this.waiter) {
      this.waiter.resolve(event)
      this.waiter = undefined
    } else this.queue.push(event)
  }

  /** The next line, which must be `event` (an `error` line, another event or the child's end reject). */
  async next<T = Record<string, unknown>>(event: string, timeoutMs: number): Promise<T> {
    const line = this.queue.shift() ?? (await this.wait(event, timeoutMs))
    if (line.event === 'error') throw new Error(`child process: ${line.message}`)
    if (line.event !== event) throw new Error(`child process: expected "${event}", got ${JSON.stringify(line)}`)
    return line as T
  }

  private wait(event: string, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.ended) return Promise.reject(this.ended)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        reject(new Error(`no "${event}" line from the child within ${timeoutMs / 1000} s`))
      }, timeoutMs)
      this.waiter = {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      }
    })
  }
}

/** scripts/bench/ingest-load.ts with its devices connected. */
class LoadWorker {
  private constructor(
    private readonly proc: Subprocess<'pipe', 'pipe', 'pipe'>,
    private readonly lines: JsonLines,
    private readonly configFile: string,
  ) {}

  static async start(config: LoadWorkerConfig): Promise<LoadWorker> {
    const configFile = join(tmpdir(), `tessera-bench-load-${randomBytes(6).toString('hex')}.json`)
    writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 })
    const removeConfig = async () => rmSync(configFile, { force: true })
    cleanups.add(removeConfig)
    const proc = spawnChild([process.execPath, join(import.meta.dir, 'ingest-load.ts'), configFile], {})
    const stderr = new LogTail()
    void drainInto(proc.stderr, stderr)
    const lines = new JsonLines(proc.stdout, async () => `load worker exited (code ${await proc.exited}):\n${stderr}`)
    const worker = new LoadWorker(proc, lines, configFile)
    await lines.next('ready', 60_000)
    return worker
  }

  /** Runs one phase; `onWindow` is called (and awaited) at the start and at the end of the measured window. */
  async run(command: Extract<RunCommand, { cmd: 'run' }>, onWindow: (edge: 'start' | 'end') => Promise<void>): Promise<RunResult> {
    this.send(command)
    const edgeTimeout = command.warmupMs + command.durationMs + 30_000
    await this.lines.next('window-start', edgeTimeout)
    await onWindow('start')
    await this.lines.next('window-end', edgeTimeout)
    await onWindow('end')
    return this.lines.next<RunResult>('result', 60_000)
  }

  async stop() {
    if (isRunning(this.proc)) {
      this.send({ cmd: 'exit' })
      await Promise.race([this.proc.exited, Bun.sleep(8_000)])
    }
    await stopChild(this.proc, STOP_GRACE_MS)
    rmSync(this.configFile, { force: true })
  }

  private send(command: RunCommand) {
    this.proc.stdin.write(`${JSON.stringify(command)}\n`)
    void this.proc.stdin.flush()
  }
}

// ---------------------------------------------------------------------------------------------
// Results

interface RoundResult {
  target: string
  /** Messages per second through the target: received by the subscriber (raw) or applied (Tessera). */
  msgsPerSecond: number
  ackedPerSecond: number
  serverCpuPercent: number | null
  /** The whole machine, all processes, % of one core (so up to cores × 100). */
  machineCpuPercent: number | null
  loadCpuPercent: number
  /** Raw only: this process (the subscriber) over the window, % of one core. */
  subscriberCpuPercent?: number
  load: RunResult
  lag?: LagResult
  /** Tessera with --dashboards: stock:changed each dashboard received per second during the lag phase. */
  dashboardEventsPerSecond?: number
  /** Tessera only: what happened inside the server during the saturated window. */
  inside?: InsideFigures
  /** Numbers that do not add up. */
  problems: string[]
  /** Worth knowing, but the numbers still hold. */
  notes: string[]
}

interface LagResult {
  rate: number
  ackedPerSecond: number
  probes: number
  pollsPerSecond: number
  /** GET /stock response times of the polls made inside the window (ms): p50, p99. */
  pollMs: { p50: number; p99: number }
  /** fsync of a 4 KiB write in the temporary directory, every DISK_PROBE_MS inside the window (ms): how busy the disk was. */
  fsyncMs: { p50: number; p99: number; max: number }
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** p99 of inventory_ingest_lag_seconds over the window, in ms; `above` = beyond the last finite bucket. */
  metricsP99Ms: number | null
  metricsP99Above: boolean
  serverCpuPercent: number | null
  ackLatencyP99Ms: number
}

interface InsideFigures {
  outcomes: Record<string, number>
  seconds: number
  batches: number
  meanBatch: number
  /** The slower of the two /metrics scrapes at the window edges. */
  scrapeMs: number
  /** CPU time per applied reading (µs): the server process, and (PostgreSQL) its database backends. */
  serverCpuUsPerReading?: number | null
  postgresCpuUsPerReading?: number | null
}

const formatUs = (us: number | null | undefined) => (us === null || us === undefined ? 'n/a' : us.toFixed(0))

// ---------------------------------------------------------------------------------------------
// Prometheus text → numbers

type Scrape = { at: number; tookMs: number; values: Map<string, number> }

/**
 * Under a saturating load the server's event loop may reach the request only seconds after it was
 * sent; it then reads the counters and answers at once, so the moment the answer arrives (not the
 * middle of the request) is when the counters were read.
 */
async function scrapeMetrics(baseUrl: string): Promise<Scrape> {
  const started = Date.now()
  const response = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })
  const at = Date.now()
  const text = await response.text()
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`)
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    values.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return { at, tookMs: at - started, values }
}

const OUTCOMES = ['applied', 'duplicate', 'rejected', 'stale'] as const

function outcome(scrape: Scrape, name: (typeof OUTCOMES)[number]): number {
  return scrape.values.get(`inventory_readings_total{outcome="${name}"}`) ?? 0
}

interface Histogram {
  /** Cumulative counts by upper bound, ascending; the last bound is Infinity. */
  buckets: { le: number; count: number }[]
  sum: number
  count: number
}

function histogram(scrape: Scrape, name: string): Histogram {
  const buckets: { le: number; count: number }[] = []
  const prefix = `${name}_bucket{le="`
  for (const [key, value] of scrape.values) {
    if (!key.startsWith(prefix)) continue
    const le = key.slice(prefix.length, key.indexOf('"', prefix.length))
    buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: value })
  }
  buckets.sort((a, b) => a.le - b.le)
  return { buckets, sum: scrape.values.get(`${name}_sum`) ?? 0, count: scrape.values.get(`${name}_count`) ?? 0 }
}

/** What was observed between two scrapes. */
function histogramDiff(before: Histogram, after: Histogram): Histogram {
  return {
    buckets: after.buckets.map((b, i) => ({ le: b.le, count: b.count - (before.buckets[i]?.count ?? 0) })),
    sum: after.sum - before.sum,
    count: after.count - before.count,
  }
}

/** Quantile estimate as Prometheus' histogram_quantile does it: linear within the bucket. */
function histogramQuantile(h: Histogram, q: number): { value: number; above: boolean } | null {
  if (h.count <= 0 || h.buckets.length === 0) return null
  const rank = q * h.count
  let lowerBound = 0
  let lowerCount = 0
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return { value: lowerBound, above: true }
      const inBucket = b.count - lowerCount
      return { value: lowerBound + (b.le - lowerBound) * (inBucket > 0 ? (rank - lowerCount) / inBucket : 1), above: false }
    }
    lowerBound = b.le
    lowerCount = b.count
  }
  return { value: lowerBound, above: true }
}

// ---------------------------------------------------------------------------------------------
// Raw aedes

/** Same topic shape and id lengths as Tessera's (device ids are UUIDv7 there too). */
function madeUpFleet(options: Options): Fleet {
  return {
    devices: Array.from({ length: options.devices }, (_, i) => ({
      deviceId: Bun.randomUUIDv7(),
      secret: 'none',
      warehouse: `${PREFIX}-WH-${(i % options.warehouses) + 1}`,
    })),
    skus: skuNames(options.skus),
  }
}

/** The names provisionFleet gives the SKUs. */
const skuNames = (n: number) => Array.from({ length: n }, (_, i) => `${PREFIX}-SKU-${String(i + 1).padStart(5, '0')}`)

async function rawRound(options: Options): Promise<RoundResult> {
  const proc = spawnChild([process.execPath, join(import.meta.dir, 'raw-broker.ts'), '0'], {})
  const stderr = new LogTail()
  void drainInto(proc.stderr, stderr)
  const lines = new JsonLines(proc.stdout, async () => `raw broker exited (code ${await proc.exited}):\n${stderr}`)
  let subscriber: mqtt.MqttClient | undefined
  let worker: LoadWorker | undefined
  try {
    const { port } = await lines.next<{ port: number }>('listening', READY_TIMEOUT_MS)
    const url = `mqtt://127.0.0.1:${port}`
    let received = 0
    subscriber = await mqtt.connectAsync(url, { clientId: `bench-subscriber-${randomBytes(4).toString('hex')}`, clean: true, reconnectPeriod: 0 })
    subscriber.on('message', () => received++)
    await subscriber.subscribeAsync('warehouses/+/devices/+/readings', { qos: 1 })

    worker = await LoadWorker.start({ url, ...madeUpFleet(options), maxInFlight: options.maxInFlight, countEvery: options.countEvery })
    const edges: { at: number; received: number; cpu: number | null; own: NodeJS.CpuUsage; machine: number | null }[] = []
    const load = await worker.run(saturate(options), async () => {
      edges.push({ at: Date.now(), received, cpu: await cpuSeconds(proc.pid), own: process.cpuUsage(), machine: await machineBusySeconds() })
    })
    const [start, end] = edges
    const seconds = (end.at - start.at) / 1000
    const problems: string[] = []
    if (load.unacknowledged > 0) problems.push(`${load.unacknowledged} readings never acknowledged`)
    if (load.totals.rejected > 0 || load.totals.resent > 0) problems.push(`devices saw ${load.totals.rejected} rejected, ${load.totals.resent} re-sent readings`)
    if (!isRunning(proc)) problems.push(`raw broker died:\n${stderr}`)
    // Every acknowledged reading must reach the subscriber (it may still be catching up).
    const deadline = Date.now() + 10_000
    while (received < load.totals.acknowledged && Date.now() < deadline) await Bun.sleep(50)
    if (received !== load.totals.acknowledged) problems.push(`the subscriber received ${received} messages, the devices had ${load.totals.acknowledged} acknowledged`)
    return {
      target: `raw aedes broker (QoS 1, ${options.devices} devices)`,
      msgsPerSecond: (end.received - start.received) / seconds,
      ackedPerSecond: load.ackedPerSecond,
      serverCpuPercent: percentOver(start.cpu, end.cpu, seconds),
      machineCpuPercent: percentOver(start.machine, end.machine, seconds),
      loadCpuPercent: load.cpuPercent,
      subscriberCpuPercent: ((end.own.user - start.own.user + end.own.system - start.own.system) / 1e6 / seconds) * 100,
      load,
      problems,
      notes: [],
    }
  } finally {
    await worker?.stop()
    await subscriber?.endAsync(true).catch(() => {})
    await stopChild(proc, STOP_GRACE_MS)
  }
}

function saturate(options: Options): Extract<RunCommand, { cmd: 'run' }> {
  return { cmd: 'run', mode: 'saturate', warmupMs: options.warmupSec * 1000, durationMs: options.durationSec * 1000 }
}

// ---------------------------------------------------------------------------------------------
// Tessera

interface Store {
  url: string
  /** PostgreSQL: the server's application_name, and where to look its backends up. */
  appName?: string
  observerUrl?: string
  cleanup(): Promise<void>
}

function freshStore(kind: DatabaseKind, options: Options): Store {
  const id = randomBytes(6).toString('hex')
  if (kind === 'sqlite') {
    const file = join(tmpdir(), `tessera-bench-${id}.db`)
    return {
      url: `sqlite:${file}`,
      cleanup: async () => {
        for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(file + suffix, { force: true })
      },
    }
  }
  const base = new URL(options.postgresUrl)
  base.searchParams.delete('schema')
  const schema = `bench_${id}`
  const url = new URL(base)
  url.searchParams.set('schema', schema)
  return {
    url: url.toString(),
    appName: schema,
    observerUrl: base.toString(),
    cleanup: async () => {
      const sql = postgres(base.toString(), { max: 1, onnotice: () => {} })
      try {
        await sql.unsafe(`drop schema if exists "${schema}" cascade`)
      } finally {
        await sql.end({ timeout: 5 })
      }
    },
  }
}

interface TesseraServer {
  proc: Subprocess<'pipe', 'pipe', 'pipe'>
  baseUrl: string
  mqttUrl: string
  log: LogTail
}

async function startTessera(databaseUrl: string, appName = 'postgres.js'): Promise<TesseraServer> {
  const [port, mqttPort] = [await freePort(), await freePort()]
  // BENCH_SERVER_FLAGS="--cpu-prof-md --cpu-prof-dir=/tmp/prof" profiles the server.
  const flags = (process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean)
  const proc = spawnChild([process.execPath, ...flags, join(ROOT, 'kernel/main.ts')], {
    NODE_ENV: 'development',
    PORT: String(port),
    HOST: '127.0.0.1',
    MQTT_PORT: String(mqttPort),
    // Whatever the caller's environment says, the embedded broker, in-memory cache and every plugin.
    MQTT_URL: '',
    REDIS_URL: '',
    PLUGINS: process.env.BENCH_PLUGINS ?? '',
    DATABASE_URL: databaseUrl,
    // Names the server's PostgreSQL connections, so the benchmark can read their backends' CPU.
    PGAPPNAME: appName,
    LOG_LEVEL: process.env.BENCH_SERVER_LOG_LEVEL ?? 'warn',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    RATE_LIMIT_IP_PER_MIN: UNLIMITED,
    RATE_LIMIT_USER_PER_MIN: UNLIMITED,
  })
  const log = new LogTail(process.env.BENCH_SERVER_LOG)
  void drainInto(proc.stdout, log)
  void drainInto(proc.stderr, log)
  const server = { proc, baseUrl: `http://127.0.0.1:${port}`, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, log }
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (!isRunning(proc)) throw new Error(`tessera exited (code ${proc.exitCode ?? proc.signalCode}) before it was ready:\n${log}`)
    const ok = await fetch(`${server.baseUrl}/health/ready`, { signal: AbortSignal.timeout(1_000) }).then(
      async (r) => (await r.arrayBuffer(), r.status === 200),
      () => false,
    )
    if (ok) return server
    await Bun.sleep(100)
  }
  throw new Error(`tessera did not answer 200 on /health/ready within ${READY_TIMEOUT_MS / 1000} s:\n${log}`)
}

async function login(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ADMIN),
  })
  const body = (await response.json().catch(() => ({}))) as { accessToken?: unknown }
  if (response.status !== 200 || typeof body.accessToken !== 'string') throw new Error(`admin login answered ${response.status}: ${JSON.stringify(body)}`)
  return body.accessToken
}

async function tesseraRound(kind: DatabaseKind, options: Options): Promise<RoundResult> {
  const store = freshStore(kind, options)
  cleanups.add(store.cleanup)
  let server: TesseraServer | undefined
  let worker: LoadWorker | undefined
  let dashboards: Dashboards | undefined
  try {
    server = await startTessera(store.url, store.appName)
    const token = await login(server.baseUrl)
    dashboards = await watchLive(server.baseUrl, token, options.dashboards)
    const started = Date.now()
    const fleet = await provisionFleet({
      api: server.baseUrl,
      token,
      warehouses: options.warehouses,
      devices: options.devices,
      skus: options.skus,
      prefix: PREFIX,
      concurrency: 16,
    })
    const api = inventoryApi(server.baseUrl, token)
    await api.ensureItem(PROBE_SKU, 'bench lag probe')
    const probeCredentials = await api.createDevice(fleet.devices[0].warehouse, `${PREFIX}-probe`)
    console.error(`  provisioned ${options.warehouses} warehouses, ${options.skus + 1} SKUs, ${options.devices + 1} devices in ${((Date.now() - started) / 1000).toFixed(1)} s`)

    worker = await LoadWorker.start({ url: server.mqttUrl, ...fleet, maxInFlight: options.maxInFlight, countEvery: options.countEvery })
    const problems: string[] = []

    // Phase 1: saturation.
    const edges: { scrape: Scrape; cpu: number | null; machine: number | null; pg: Map<number, number> | null }[] = []
    const load = await worker.run(saturate(options), async () => {
      const pg = store.observerUrl ? await backendCpu(store.observerUrl, store.appName!) : null
      edges.push({ scrape: await scrapeMetrics(server!.baseUrl), cpu: await cpuSeconds(server!.proc.pid), machine: await machineBusySeconds(), pg })
    })
    const [start, end] = edges
    const seconds = (end.scrape.at - start.scrape.at) / 1000
    const outcomes = Object.fromEntries(OUTCOMES.map((o) => [o, outcome(end.scrape, o) - outcome(start.scrape, o)]))
    const applied = outcomes.applied / seconds
    const batches = histogramDiff(histogram(start.scrape, 'inventory_ingest_batch_size'), histogram(end.scrape, 'inventory_ingest_batch_size'))
    const inside: InsideFigures = {
      outcomes,
      seconds,
      batches: batches.count,
      meanBatch: batches.count ? batches.sum / batches.count : 0,
      scrapeMs: Math.max(start.scrape.tookMs, end.scrape.tookMs),
    }
    const serverCpuPercent = percentOver(start.cpu, end.cpu, seconds)
    const perReading = (cpu: number | null) => (cpu === null || outcomes.applied === 0 ? null : (cpu * 1e6) / outcomes.applied)
    inside.serverCpuUsPerReading = perReading(start.cpu === null || end.cpu === null ? null : end.cpu - start.cpu)
    inside.postgresCpuUsPerReading = perReading(backendCpuUsed(start.pg, end.pg))
    console.error(
      `  saturated: ${formatInt(applied)} applied/s, ${formatInt(load.ackedPerSecond)} acked/s, server CPU ${formatPercent(serverCpuPercent)}, load CPU ${formatPercent(load.cpuPercent)}, ${formatInt(batches.count / seconds)} tx/s of ${inside.meanBatch.toFixed(0)} messages on average; ` +
        `CPU per applied reading: server ${formatUs(inside.serverCpuUsPerReading)} µs${kind === 'postgres' ? `, PostgreSQL backends ${formatUs(inside.postgresCpuUsPerReading)} µs` : ''}`,
    )

    // Phase 2: below saturation, with the probe.
    const rate = options.lagRate ?? Math.max(1, Math.round(applied * options.lagFraction))
    const notes: string[] = []
    const seenBefore = dashboards.received()
    const lagStarted = Date.now()
    const lag = await lagPhase(server, token, probeCredentials, worker, rate, options, problems, notes)
    const dashboardEventsPerSecond = options.dashboards ? (dashboards.received() - seenBefore) / options.dashboards / ((Date.now() - lagStarted) / 1000) : undefined
    if (dashboardEventsPerSecond !== undefined) console.error(`  dashboards: each received ${formatInt(dashboardEventsPerSecond)} stock:changed/s over the lag phase (its warm-up and settling included)`)

    // Everything acknowledged must be in the ledger exactly once: applied (or stale, for counts).
    const final = await scrapeMetrics(server.baseUrl)
    const finalLoad = lag.load
    const totalAcked = finalLoad.totals.acknowledged + lag.probeAcked
    const accounted = outcome(final, 'applied') + outcome(final, 'stale') + outcome(final, 'duplicate')
    if (outcome(final, 'rejected') > 0) problems.push(`${outcome(final, 'rejected')} readings rejected by the server`)
    if (accounted !== totalAcked) problems.push(`server counted ${accounted} readings (applied + stale + duplicate), devices had ${totalAcked} acknowledged`)
    if (outcome(final, 'duplicate') > finalLoad.totals.resent) problems.push(`${outcome(final, 'duplicate')} duplicates but only ${finalLoad.totals.resent} re-sends`)
    if (load.unacknowledged > 0 || finalLoad.unacknowledged > 0) problems.push(`readings never acknowledged: ${load.unacknowledged} / ${finalLoad.unacknowledged}`)
    if (finalLoad.totals.reconnects > 0) problems.push(`${finalLoad.totals.reconnects} device reconnects`)
    if (Math.abs(applied - load.ackedPerSecond) > MAX_APPLIED_ACKED_GAP * load.ackedPerSecond)
      notes.push(
        `applied/s (${formatInt(applied)}) and acked/s at the devices (${formatInt(load.ackedPerSecond)}) differ by more than ${MAX_APPLIED_ACKED_GAP * 100}%: ` +
          `the server commits and acknowledges in ${inside.batches} transactions of ~${inside.meanBatch.toFixed(0)} messages per window, which its edges cut differently ` +
          `(GET /metrics answered after up to ${formatInt(inside.scrapeMs)} ms); ${problems.length ? 'see above' : 'the totals over the run agree'}`,
      )
    if (!isRunning(server.proc)) problems.push(`tessera died:\n${server.log}`)

    return {
      target: `tessera ${kind}`,
      msgsPerSecond: applied,
      ackedPerSecond: load.ackedPerSecond,
      serverCpuPercent,
      machineCpuPercent: percentOver(start.machine, end.machine, seconds),
      loadCpuPercent: load.cpuPercent,
      load,
      lag: lag.result,
      dashboardEventsPerSecond,
      inside,
      problems,
      notes,
    }
  } finally {
    dashboards?.close()
    await worker?.stop()
    if (server) await stopChild(server.proc, STOP_GRACE_MS)
    cleanups.delete(store.cleanup)
    await store.cleanup().catch((error) => console.error(`  cleanup of ${kind} failed: ${error instanceof Error ? error.message : error}`))
  }
}

interface Dashboards {
  /** stock:changed received so far by all of them. */
  received(): number
  close(): void
}

/** `count` managers' dashboards: /live sockets watching every warehouse (the default subscription). */
async function watchLive(baseUrl: string, token: string, count: number): Promise<Dashboards> {
  let received = 0
  const sockets = await Promise.all(
    Array.from({ length: count }, async () => {
      const socket = io(`${baseUrl}/live`, { auth: { token }, transports: ['websocket'] })
      socket.on('stock:changed', () => received++)
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('connect_error', reject)
      })
      return socket
    }),
  )
  return { received: () => received, close: () => sockets.forEach((s) => s.close()) }
}

/**
 * The load paced at `rate` while the probe publishes a +1 delta for PROBE_SKU every probeMs and a
 * poller reads its stock: a probe's lag is from its publish to the end of the first poll whose
 * onHand includes it (onHand counts the probes applied, as nothing else touches that SKU).
 */
async function lagPhase(
  server: TesseraServer,
  token: string,
  credentials: DeviceCredentials,
  worker: LoadWorker,
  rate: number,
  options: Options,
  problems: string[],
  notes: string[],
): Promise<{ result: LagResult; load: RunResult; probeAcked: number }> {
  // An in-flight window the probe never fills: each probe goes on the wire when it is made, instead
  // of waiting in the device's outbox for an earlier one's PUBACK (which would add to its lag).
  const probe: Device = await connectDevice({ url: server.mqttUrl, ...credentials, maxInFlight: PROBE_MAX_IN_FLIGHT })
  const stockUrl = `${server.baseUrl}/api/v1/inventory/stock?sku=${encodeURIComponent(PROBE_SKU)}&warehouse=${encodeURIComponent(credentials.warehouse)}`
  const headers = { authorization: `Bearer ${token}` }
  const readOnHand = async () => {
    const response = await fetch(stockUrl, { headers, signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })
    const body = (await response.json()) as { items?: { onHand: number }[] }
    if (response.status !== 200) throw new Error(`GET stock answered ${response.status}: ${JSON.stringify(body)}`)
    return body.items?.[0]?.onHand ?? 0
  }

  const base = await readOnHand()
  const publishedAt: number[] = []
  const visibleAfter: number[] = []
  let window = { start: Infinity, end: Infinity }
  let publishing = true
  let abandoned = false
  let pollError: unknown
  let polls = 0
  const pollsAt: number[] = []
  const publisher = setInterval(() => {
    if (!publishing) return
    publishedAt.push(Date.now())
    probe.enqueue({ sku: PROBE_SKU, type: 'delta', value: 1 })
  }, options.probeMs)

  // Response times of the polls inside the window: how the server answers HTTP while it ingests.
  const pollTimes: number[] = []
  const poller = (async () => {
    let seen = 0
    while (!abandoned) {
      const asked = Date.now()
      const onHand = (await readOnHand()) - base
      polls++
      const now = Date.now()
      if (asked >= window.start && now <= window.end) pollTimes.push(now - asked)
      for (; seen < onHand && seen < publishedAt.length; seen++) visibleAfter[seen] = now - publishedAt[seen]
      if (!publishing && seen >= publishedAt.length) return
      await Bun.sleep(options.pollMs)
    }
  })().catch((error) => (pollError = error))

  // The disk's answer time beside the run: a slow lag phase with a slow fsync is the machine's.
  const fsyncTimes: number[] = []
  const diskFile = join(tmpdir(), `tessera-bench-fsync-${randomBytes(4).toString('hex')}`)
  const disk = await open(diskFile, 'w')
  const page = Buffer.alloc(4096, 1)
  let syncing = false
  const diskProbe = setInterval(() => {
    if (syncing) return
    syncing = true
    const asked = performance.now()
    // On the thread pool, so this process's event loop (the poller, the probe) does not wait.
    void disk
      .write(page, 0, page.length, 0)
      .then(() => disk.sync())
      .then(() => {
        const at = Date.now()
        if (at >= window.start && at <= window.end) fsyncTimes.push(performance.now() - asked)
      })
      .catch(() => {})
      .finally(() => (syncing = false))
  }, DISK_PROBE_MS)

  const edges: { scrape: Scrape; cpu: number | null }[] = []
  let load: RunResult
  let settled: boolean
  let probeAcked: number
  try {
    load = await worker.run({ cmd: 'run', mode: 'paced', rate, warmupMs: options.warmupSec * 1000, durationMs: options.durationSec * 1000 }, async (edge) => {
      if (edge === 'start') window = { start: Date.now(), end: Infinity }
      else window.end = Date.now()
      pollsAt.push(polls)
      edges.push({ scrape: await scrapeMetrics(server.baseUrl), cpu: await cpuSeconds(server.proc.pid) })
    })
    publishing = false
    clearInterval(publisher)
    settled = await Promise.race([poller.then(() => true), Bun.sleep(PROBE_SETTLE_MS).then(() => false)])
    await probe.drain().catch(() => {})
    probeAcked = probe.stats().acknowledged
  } finally {
    publishing = false
    abandoned = true
    clearInterval(publisher)
    clearInterval(diskProbe)
    await disk.close().catch(() => {})
    rmSync(diskFile, { force: true })
    await Promise.race([probe.close(2000).catch(() => {}), Bun.sleep(5_000)])
  }
  if (pollError) throw pollError
  if (!settled) problems.push(`probe readings still not visible ${PROBE_SETTLE_MS / 1000} s after the lag window`)

  const samples: number[] = []
  for (let i = 0; i < publishedAt.length; i++) if (publishedAt[i] >= window.start && publishedAt[i] < window.end && visibleAfter[i] !== undefined) samples.push(visibleAfter[i])
  samples.sort((a, b) => a - b)
  if (samples.length === 0) throw new Error('no probe reading became visible during the lag window')
  const [start, end] = edges
  const seconds = (end.scrape.at - start.scrape.at) / 1000
  const metricsP99 = histogramQuantile(histogramDiff(histogram(start.scrape, 'inventory_ingest_lag_seconds'), histogram(end.scrape, 'inventory_ingest_lag_seconds')), 0.99)
  if (load.ackedPerSecond < rate * 0.95)
    notes.push(
      `the lag phase asked for ${formatInt(rate)} readings/s but only ${formatInt(load.ackedPerSecond)}/s were acknowledged: ` +
        'the server could not keep up even there (smaller batches cost more per reading), so its lag is that of a saturated server',
    )
  const result: LagResult = {
    rate,
    ackedPerSecond: load.ackedPerSecond,
    probes: samples.length,
    pollsPerSecond: (pollsAt[1] - pollsAt[0]) / ((window.end - window.start) / 1000),
    pollMs: (() => {
      const sorted = [...pollTimes].sort((a, b) => a - b)
      return sorted.length ? { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) } : { p50: 0, p99: 0 }
    })(),
    fsyncMs: (() => {
      const sorted = fsyncTimes.map((ms) => Math.round(ms * 10) / 10).sort((a, b) => a - b)
      return sorted.length ? { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1]! } : { p50: 0, p99: 0, max: 0 }
    })(),
    p50Ms: quantile(samples, 0.5),
    p99Ms: quantile(samples, 0.99),
    maxMs: samples[samples.length - 1],
    metricsP99Ms: metricsP99 ? metricsP99.value * 1000 : null,
    metricsP99Above: metricsP99?.above ?? false,
    serverCpuPercent: start.cpu === null || end.cpu === null ? null : ((end.cpu - start.cpu) / seconds) * 100,
    ackLatencyP99Ms: load.ackLatencyMs.p99,
  }
  console.error(
    `  lag phase: ${formatInt(rate)} readings/s asked, ${formatInt(load.ackedPerSecond)}/s acked, server CPU ${formatPercent(result.serverCpuPercent)}; ` +
      `probe publish→visible p50 ${result.p50Ms} ms p99 ${result.p99Ms} ms max ${result.maxMs} ms (${samples.length} probes); ` +
      `inventory_ingest_lag_seconds p99 ${formatMetricsLag(result)} ms; device queue→PUBACK p99 ${load.ackLatencyMs.p99} ms`,
  )
  return { result, load, probeAcked }
}

/** Nearest-rank quantile of sorted numbers. */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

// ---------------------------------------------------------------------------------------------
// Report

interface Summary {
  target: string
  best: RoundResult
  /** The round with the lowest probe p99 (Tessera only). */
  bestLag?: RoundResult
  rounds: RoundResult[]
}

function summarize(rounds: RoundResult[]): Summary {
  const best = rounds.reduce((a, b) => (b.msgsPerSecond > a.msgsPerSecond ? b : a))
  const withLag = rounds.filter((r) => r.lag)
  const bestLag = withLag.length ? withLag.reduce((a, b) => (b.lag!.p99Ms < a.lag!.p99Ms ? b : a)) : undefined
  return { target: best.target, best, bestLag, rounds }
}

/** Prints the report; returns 0 (all pass), 1 (a target fails) or 2 (numbers that do not add up). */
function report(raw: Summary, tessera: Map<DatabaseKind, Summary>, options: Options): number {
  const rawRate = raw.best.msgsPerSecond
  const row = (s: Summary) => {
    const lag = s.bestLag?.lag
    return (
      `| ${s.target} | ${formatInt(s.best.msgsPerSecond)} | ${formatInt(s.best.ackedPerSecond)} | ${(s.best.msgsPerSecond / rawRate).toFixed(2)} | ` +
      `${lag ? lag.p50Ms : '–'} | ${lag ? lag.p99Ms : '–'} | ${lag ? formatMetricsLag(lag) : '–'} | ` +
      `${formatPercent(s.best.serverCpuPercent)} | ${formatPercent(s.best.loadCpuPercent)} |`
    )
  }
  const lines = [
    `MQTT QoS 1 ingestion: ${options.devices} devices, ${options.maxInFlight} publishes in flight each, one reading per message` +
      `${options.countEvery ? ` (1 in ${options.countEvery} a count)` : ' (deltas)'}, ${options.warmupSec} s warm-up + ${options.durationSec} s, ` +
      `best of ${options.rounds} round${options.rounds > 1 ? 's' : ''}` +
      `${options.dashboards ? `; ${options.dashboards} /live dashboard${options.dashboards > 1 ? 's' : ''} watching every warehouse` : ''}`,
    `msgs/s: raw = received by a QoS 1 subscriber; tessera = inventory_readings_total{outcome="applied"} growth. ` +
      `Lag at ${options.lagRate ? `${formatInt(options.lagRate)} readings/s` : `${options.lagFraction * 100}% of the tessera rate`}: probe publish → visible on GET /stock, and p99 of inventory_ingest_lag_seconds.`,
    '',
    '| target | msgs/s | acked/s at devices | ratio to raw | lag p50 ms | lag p99 ms | ingest lag p99 ms (/metrics) | server CPU | load CPU |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    row(raw),
    ...[...tessera.values()].map(row),
    '',
  ]
  let code = 0
  for (const [kind, s] of tessera) {
    const ratio = s.best.msgsPerSecond / rawRate
    const pass = ratio >= options.minRatio
    if (!pass) code = Math.max(code, 1)
    lines.push(`ratio ${kind}: ${ratio.toFixed(2)} (target >= ${options.minRatio.toFixed(2)}) ${pass ? 'PASS' : 'FAIL'}`)
  }
  for (const [kind, s] of tessera) {
    const lag = s.bestLag!.lag!
    const pass = lag.p99Ms < options.maxLagMs
    if (!pass) code = Math.max(code, 1)
    lines.push(`lag p99 below saturation: ${lag.p99Ms} ms (target < ${options.maxLagMs} ms) ${pass ? 'PASS' : 'FAIL'} [${kind}, at ${formatInt(lag.rate)} readings/s]`)
  }
  lines.push('')
  const cores = navigator.hardwareConcurrency
  const rawCpu = (raw.best.serverCpuPercent ?? 0) + raw.best.loadCpuPercent + (raw.best.subscriberCpuPercent ?? 0)
  lines.push(
    `raw: broker CPU ${formatPercent(raw.best.serverCpuPercent)}, load worker ${formatPercent(raw.best.loadCpuPercent)}, ` +
      `subscriber ${formatPercent(raw.best.subscriberCpuPercent ?? null)} (% of one core); whole machine ${formatPercent(raw.best.machineCpuPercent)} of ${cores * 100}%`,
  )
  if (raw.best.machineCpuPercent !== null && raw.best.machineCpuPercent - rawCpu > OTHERS_CPU_PERCENT)
    lines.push(
      `note: other processes used about ${formatPercent(raw.best.machineCpuPercent - rawCpu)} of a core during the raw window: its figure is disturbed (run again, or use --rounds).`,
    )
  if (rawCpu >= MACHINE_SATURATED * cores * 100)
    lines.push(
      `note: broker, load worker and subscriber together used ${formatPercent(rawCpu)} of the machine's ${cores * 100}%: the machine, not the broker, ` +
        'set the raw figure (a faster machine would raise it), so it is a lower bound and the ratios flatter Tessera.',
    )
  if (raw.best.loadCpuPercent >= SATURATED_CPU_PERCENT)
    lines.push(
      `note: the load worker used ${formatPercent(raw.best.loadCpuPercent)} of a core against the raw broker (which used ${formatPercent(raw.best.serverCpuPercent)}): ` +
        'the generator, not the broker, set the raw figure, so it is a lower bound and the ratios flatter Tessera.',
    )
  for (const [kind, s] of tessera) {
    const i = s.best.inside!
    lines.push(
      `${kind} inside the saturated window: ${Object.entries(i.outcomes).map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
        `${i.batches} transactions (${(i.batches / i.seconds).toFixed(1)}/s) of ${i.meanBatch.toFixed(0)} messages on average, ` +
        `one every ${((i.seconds * 1000) / Math.max(1, i.batches)).toFixed(0)} ms; server CPU ${formatPercent(s.best.serverCpuPercent)}, ` +
        `CPU per applied reading: server ${formatUs(i.serverCpuUsPerReading)} µs${kind === 'postgres' ? `, PostgreSQL backends ${formatUs(i.postgresCpuUsPerReading)} µs` : ''}, ` +
        `whole machine ${formatPercent(s.best.machineCpuPercent)}${kind === 'postgres' ? ' (PostgreSQL included)' : ''}; ` +
        `GET /metrics answered after up to ${formatInt(i.scrapeMs)} ms`,
    )
    const lag = s.bestLag!.lag!
    lines.push(
      `${kind} lag phase: ${formatInt(lag.rate)} readings/s asked (${options.lagRate ? 'fixed by --lag-rate' : `${options.lagFraction * 100}% of that round's rate`}), ${formatInt(lag.ackedPerSecond)}/s acknowledged, ` +
        `server CPU ${formatPercent(lag.serverCpuPercent)}; probe publish→visible max ${lag.maxMs} ms over ${lag.probes} probes, ${formatInt(lag.pollsPerSecond)} polls/s ` +
        `(GET /stock answered in p50 ${lag.pollMs.p50} ms, p99 ${lag.pollMs.p99} ms); ` +
        `disk: fsync of 4 KiB p50 ${lag.fsyncMs.p50} ms, p99 ${lag.fsyncMs.p99} ms, max ${lag.fsyncMs.max} ms; ` +
        `device queue→PUBACK p99 ${lag.ackLatencyP99Ms} ms`,
    )
  }
  if (options.rounds > 1) {
    const perRound = (s: Summary) => s.rounds.map((r) => formatInt(r.msgsPerSecond)).join(' / ')
    const lagPerRound = (s: Summary) => s.rounds.map((r) => (r.lag ? `${r.lag.p99Ms}` : '–')).join(' / ')
    lines.push(`per round msgs/s: raw ${perRound(raw)}; ${[...tessera].map(([kind, s]) => `${kind} ${perRound(s)} (lag p99 ms ${lagPerRound(s)})`).join('; ')}`)
  }
  const problems = [raw, ...tessera.values()].flatMap((s) => s.rounds.flatMap((r) => r.problems.map((p) => `${r.target}: ${p}`)))
  for (const s of [raw, ...tessera.values()]) for (const r of s.rounds) for (const n of r.notes) lines.push(`note: ${r.target}: ${n}`)
  for (const p of problems) lines.push(`invalid: ${p}`)
  if (problems.length) code = 2
  console.log(lines.join('\n'))
  return code
}

function formatMetricsLag(lag: LagResult): string {
  if (lag.metricsP99Ms === null) return 'n/a'
  return `${lag.metricsP99Above ? '> ' : ''}${lag.metricsP99Ms.toFixed(0)}`
}

function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

function formatPercent(p: number | null): string {
  return p === null ? 'n/a' : `${p.toFixed(0)}%`
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = readOptions()
  const rawRounds: RoundResult[] = []
  const tesseraRounds = new Map<DatabaseKind, RoundResult[]>(options.databases.map((d) => [d, []]))
  for (let round = 1; round <= options.rounds; round++) {
    console.error(`round ${round}/${options.rounds}: raw aedes`)
    const raw = await rawRound(options)
    rawRounds.push(raw)
    console.error(
      `  ${formatInt(raw.msgsPerSecond)} msgs/s received, ${formatInt(raw.ackedPerSecond)} acked/s, broker CPU ${formatPercent(raw.serverCpuPercent)}, ` +
        `load CPU ${formatPercent(raw.loadCpuPercent)}, subscriber CPU ${formatPercent(raw.subscriberCpuPercent ?? null)}`,
    )
    for (const kind of options.databases) {
      console.error(`round ${round}/${options.rounds}: tessera ${kind}`)
      tesseraRounds.get(kind)!.push(await tesseraRound(kind, options))
    }
  }
  return report(summarize(rawRounds), new Map([...tesseraRounds].map(([k, r]) => [k, summarize(r)])), options)
}

let interrupted = false
process.on('exit', killAllChildren)
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(signal, () => {
    interrupted = true
    console.error(`\n${signal}: stopping every child process`)
    killAllChildren()
    void Promise.race([runCleanups(), Bun.sleep(3_000)]).finally(() => process.exit(code))
  })
}

try {
  process.exitCode = await main()
} catch (error) {
  // After a signal the children's deaths surface here as errors; the signal handler reports and exits.
  if (!interrupted) console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 2
} finally {
  killAllChildren()
  await runCleanups()
}
