/**
 * Simulates a fleet of warehouse sensors: N devices spread over the warehouses publish an
 * aggregate R readings/s (mostly small `delta` readings, now and then a `count`), printing a line
 * per second and a summary at the end.
 *
 *   bun run iot/simulate.ts --devices 500 --rate 20000 [--url mqtt://127.0.0.1:1883] [--duration 60]
 *     [--batch 1] [--max-in-flight 100] [--protocol 4|5] [--count-every 100] [--heartbeat-ms 30000]
 *     [--credentials fleet.json [--sku-list SKU-1,SKU-2]]
 *     [--api http://127.0.0.1:3000 --token <manager/admin token> [--warehouses 5] [--skus 200] [--prefix SIM] [--save fleet.json]]
 *
 * Without --credentials or --api the devices get made-up ids (for a broker that lets anyone in).
 * --heartbeat-ms (default 30 s, 0 = off) keeps idle devices from being marked offline by the server.
 * `simulate()` is the same run for benchmarks, without the CLI.
 */
import { parseArgs } from 'node:util'
import { Device, fleetStats, type Reading, type WireReading } from './device'
import { type DeviceCredentials, type Fleet, inParallel, loadFleet, provisionFleet, saveFleet } from './provision'

export interface SimulationOptions {
  url: string
  fleet: Fleet
  /** Aggregate readings per second over all devices. */
  rate: number
  /** Seconds; 0 runs until `stop()` is called (or Ctrl-C in the CLI). */
  duration: number
  batchSize?: number
  maxInFlight?: number
  protocolVersion?: 4 | 5
  heartbeatMs?: number
  /** One reading in this many is a `count` (default 100). */
  countEvery?: number
  /** A device with this many unacknowledged readings gets no new ones until it catches up (default 20 000). */
  maxPending?: number
  /** Called once a second with the last second's figures. */
  onTick?: (tick: Tick) => void
  /** Resolves early when it resolves (e.g. on SIGINT). */
  stop?: Promise<void>
}

export interface Totals {
  sent: number
  acknowledged: number
  resent: number
  rejected: number
  pending: number
  online: number
}

export interface Tick extends Totals {
  second: number
  sentPerSecond: number
  ackedPerSecond: number
  /** Readings not generated because their device was too far behind. */
  skipped: number
  p99Ms: number
}

export interface SimulationSummary extends Totals {
  devices: number
  seconds: number
  generated: number
  skipped: number
  ackedPerSecond: number
  /** Time from queuing a reading to its PUBACK. */
  latencyMs: { p50: number; p95: number; p99: number; max: number }
  /** Readings never acknowledged before the end (drain timed out). */
  unacknowledged: number
}

const TICK_MS = 10
const DRAIN_TIMEOUT_MS = 15_000

/** Connects the fleet, generates readings at the requested rate, drains, closes, and summarises. */
export async function simulate(options: SimulationOptions): Promise<SimulationSummary> {
  const devices = await connectFleet(options)
  const latency = { total: new LatencyHistogram(), second: new LatencyHistogram() }
  for (const d of devices) d.on('acknowledged', (readings) => recordLatency(readings, latency))
  const generator = new ReadingGenerator(devices, options)

  const started = Date.now()
  const report = secondReporter(devices, generator, latency.second, options)
  await runFor(options, started, () => generator.generateUntil(Date.now()), report)
  const seconds = (Date.now() - started) / 1000
  await drainFleet(devices)
  const totals = sumStats(devices)
  await Promise.all(devices.map((d) => d.close(2000)))
  return {
    ...totals,
    devices: devices.length,
    seconds,
    generated: generator.generated,
    skipped: generator.skipped,
    ackedPerSecond: Math.round(totals.acknowledged / seconds),
    latencyMs: latency.total.summary(),
    unacknowledged: totals.pending,
  }
}

async function connectFleet(options: SimulationOptions): Promise<Device[]> {
  const make = (c: DeviceCredentials) =>
    new Device({
      url: options.url,
      ...c,
      batchSize: options.batchSize,
      maxInFlight: options.maxInFlight,
      protocolVersion: options.protocolVersion,
      heartbeatMs: options.heartbeatMs,
    })
  const devices = options.fleet.devices.map(make)
  // A bounded number of CONNECTs at once spares the broker a thundering herd.
  await inParallel(devices, 50, (d) => d.connect()).catch(async (error) => {
    await Promise.all(devices.map((d) => d.abort()))
    throw error
  })
  return devices
}

/** Calls `work` every tick and `report` every second until the duration is over or `stop` resolves. */
async function runFor(options: SimulationOptions, started: number, work: () => void, report: (second: number) => void) {
  let stopped = false
  options.stop?.then(() => (stopped = true))
  let second = 0
  while (!stopped && (options.duration === 0 || Date.now() - started < options.duration * 1000)) {
    work()
    await Bun.sleep(TICK_MS)
    if (Date.now() - started >= (second + 1) * 1000) report(++second)
  }
}

/** Returns the once-a-second callback; it keeps the previous totals to turn them into rates. */
function secondReporter(devices: Device[], generator: ReadingGenerator, latency: LatencyHistogram, options: SimulationOptions) {
  let previous = sumStats(devices)
  return (second: number) => {
    const totals = sumStats(devices)
    options.onTick?.({
      ...totals,
      second,
      sentPerSecond: totals.sent - previous.sent,
      ackedPerSecond: totals.acknowledged - previous.acknowledged,
      skipped: generator.skipped,
      p99Ms: latency.summary().p99,
    })
    previous = totals
    latency.reset()
  }
}

async function drainFleet(devices: Device[]) {
  const deadline = new Promise((resolve) => setTimeout(resolve, DRAIN_TIMEOUT_MS).unref())
  await Promise.race([Promise.allSettled(devices.map((d) => d.drain())), deadline])
}

function sumStats(devices: Device[]): Totals {
  const { connects: _connects, ...totals } = fleetStats(devices)
  return totals
}

function recordLatency(readings: WireReading[], latency: { total: LatencyHistogram; second: LatencyHistogram }) {
  const now = Date.now()
  for (const r of readings) {
    latency.total.add(now - r.ts)
    latency.second.add(now - r.ts)
  }
}

/** Hands out readings round-robin so that the fleet as a whole keeps to the requested rate. */
class ReadingGenerator {
  generated = 0
  skipped = 0
  private next = 0
  private readonly started = Date.now()
  private readonly countEvery: number
  private readonly maxPending: number

  constructor(
    private readonly devices: Device[],
    private readonly options: SimulationOptions,
  ) {
    this.countEvery = options.countEvery ?? 100
    this.maxPending = options.maxPending ?? 20_000
  }

  generateUntil(now: number) {
    const due = Math.floor(((now - this.started) / 1000) * this.options.rate) - this.generated - this.skipped
    for (let i = 0; i < due; i++) this.generateOne()
  }

  private generateOne() {
    const device = this.devices[this.next++ % this.devices.length]
    if (device.stats().pending >= this.maxPending) {
      this.skipped++
      return
    }
    device.enqueue(this.reading())
    this.generated++
  }

  private reading(): Reading {
    const skus = this.options.fleet.skus
    const sku = skus[Math.floor(Math.random() * skus.length)]
    if (Math.random() * this.countEvery < 1) return { sku, type: 'count', value: Math.floor(Math.random() * 500) }
    const size = 1 + Math.floor(Math.random() * 3)
    return { sku, type: 'delta', value: Math.random() < 0.5 ? -size : size }
  }
}

/** Millisecond buckets up to a minute; enough resolution for ack latency percentiles. */
class LatencyHistogram {
  private counts = new Uint32Array(60_001)
  private n = 0
  private max = 0

  add(ms: number) {
    const bucket = Math.min(Math.max(0, Math.round(ms)), 60_000)
    this.counts[bucket]++
    this.n++
    if (ms > this.max) this.max = ms
  }

  reset() {
    this.counts.fill(0)
    this.n = 0
    this.max = 0
  }

  summary() {
    return { p50: this.percentile(0.5), p95: this.percentile(0.95), p99: this.percentile(0.99), max: this.max }
  }

  private percentile(p: number): number {
    const target = Math.ceil(this.n * p)
    let seen = 0
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms]
      if (seen >= target && seen > 0) return ms
    }
    return 0
  }
}

// ---------------------------------------------------------------- CLI

const USAGE = `usage: bun run iot/simulate.ts --devices N --rate R [--url mqtt://127.0.0.1:1883] [--duration 60] [--batch 1]
  [--max-in-flight 100] [--protocol 4|5] [--count-every 100] [--heartbeat-ms 30000]
  [--credentials fleet.json [--sku-list A,B]] | [--api http://127.0.0.1:3000 --token T [--warehouses 5] [--skus 200] [--prefix SIM] [--save fleet.json]]`

function parseCli(argv: string[]) {
  try {
    return parseFlags(argv)
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

function parseFlags(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      duration: { type: 'string', default: '60' },
      batch: { type: 'string', default: '1' },
      'max-in-flight': { type: 'string', default: '100' },
      protocol: { type: 'string', default: '4' },
      'count-every': { type: 'string', default: '100' },
      'heartbeat-ms': { type: 'string', default: '30000' },
      credentials: { type: 'string' },
      'sku-list': { type: 'string' },
      api: { type: 'string' },
      token: { type: 'string' },
      warehouses: { type: 'string', default: '5' },
      skus: { type: 'string', default: '200' },
      prefix: { type: 'string', default: 'SIM' },
      save: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  return values
}

type CliValues = ReturnType<typeof parseFlags>

/** A positive integer flag, or a usage error naming it. */
function intFlag(values: CliValues, name: keyof CliValues, min = 1): number {
  const raw = values[name]
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min} (got ${raw})`)
  return n
}

function protocolFlag(values: CliValues): 4 | 5 {
  if (values.protocol === '4' || values.protocol === '5') return Number(values.protocol) as 4 | 5
  throw new UsageError(`--protocol must be 4 (MQTT 3.1.1) or 5 (got ${values.protocol})`)
}

class UsageError extends Error {}

async function fleetFromCli(values: CliValues, log: (line: string) => void): Promise<Fleet> {
  if (values.credentials && values.api) throw new UsageError('use either --credentials or --api, not both')
  if (values.credentials) return fleetFromFile(values)
  if (values.api) return fleetFromApi(values, log)
  log('no --credentials or --api: made-up device ids (the broker must accept any login)')
  return madeUpFleet(intFlag(values, 'devices'), intFlag(values, 'warehouses'), intFlag(values, 'skus'))
}

function fleetFromFile(values: CliValues): Fleet {
  const fleet = loadFleet(values.credentials!)
  const skus = values['sku-list'] ? values['sku-list'].split(',').filter(Boolean) : fleet.skus
  if (skus.length === 0) throw new UsageError(`${values.credentials} lists no skus: add "skus" to it or pass --sku-list`)
  const count = values.devices ? intFlag(values, 'devices') : fleet.devices.length
  if (count > fleet.devices.length) throw new UsageError(`--devices ${count} but ${values.credentials} holds only ${fleet.devices.length}`)
  return { devices: fleet.devices.slice(0, count), skus }
}

async function fleetFromApi(values: CliValues, log: (line: string) => void): Promise<Fleet> {
  if (!values.token) throw new UsageError('--api needs --token (a manager or admin access token)')
  const fleet = await provisionFleet({
    api: values.api!,
    token: values.token,
    devices: intFlag(values, 'devices'),
    warehouses: intFlag(values, 'warehouses'),
    skus: intFlag(values, 'skus'),
    prefix: values.prefix,
    onProgress: (m) => log(`provisioned: ${m}`),
  })
  if (values.save) {
    saveFleet(values.save, fleet)
    log(`fleet saved to ${values.save} (reuse it with --credentials ${values.save})`)
  }
  return fleet
}

function madeUpFleet(devices: number, warehouses: number, skus: number): Fleet {
  const run = Date.now().toString(36)
  return {
    devices: Array.from({ length: devices }, (_, i) => ({ deviceId: `sim-${run}-${i + 1}`, secret: 'none', warehouse: `WH-${(i % warehouses) + 1}` })),
    skus: Array.from({ length: skus }, (_, i) => `SKU-${String(i + 1).padStart(5, '0')}`),
  }
}

function formatTick(t: Tick): string {
  return `t=${t.second}s sent/s=${t.sentPerSecond} acked/s=${t.ackedPerSecond} pending=${t.pending} resent=${t.resent} rejected=${t.rejected} skipped=${t.skipped} online=${t.online} p99=${t.p99Ms}ms`
}

function formatSummary(s: SimulationSummary): string {
  return [
    `summary: ${s.devices} devices, ${s.seconds.toFixed(1)} s`,
    `  generated ${s.generated}, skipped ${s.skipped} (device too far behind)`,
    `  sent ${s.sent}, acknowledged ${s.acknowledged} (${s.ackedPerSecond}/s), resent ${s.resent}, rejected ${s.rejected}, unacknowledged ${s.unacknowledged}`,
    `  latency queue→PUBACK: p50 ${s.latencyMs.p50} ms, p95 ${s.latencyMs.p95} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms`,
  ].join('\n')
}

/** Every flag except the fleet, checked before anything is provisioned or connected. */
function runOptionsFromCli(values: CliValues): Omit<SimulationOptions, 'fleet'> {
  return {
    url: values.url!,
    rate: intFlag(values, 'rate'),
    duration: intFlag(values, 'duration', 0),
    batchSize: intFlag(values, 'batch'),
    maxInFlight: intFlag(values, 'max-in-flight'),
    protocolVersion: protocolFlag(values),
    heartbeatMs: intFlag(values, 'heartbeat-ms', 0) || undefined,
    countEvery: intFlag(values, 'count-every'),
  }
}

async function main() {
  const log = (line: string) => console.log(line)
  const values = parseCli(process.argv.slice(2))
  if (values.help) return log(USAGE)
  const run = runOptionsFromCli(values)
  const fleet = await fleetFromCli(values, log)
  const interrupted = new Promise<void>((resolve) => process.once('SIGINT', () => resolve()))
  log(`${fleet.devices.length} devices, ${fleet.skus.length} skus, ${run.rate} readings/s for ${run.duration || '∞'} s → ${run.url}`)
  const summary = await simulate({ ...run, fleet, onTick: (t) => log(formatTick(t)), stop: interrupted })
  log(formatSummary(summary))
  process.exit(summary.unacknowledged > 0 ? 1 : 0)
}

if (import.meta.main) {
  main().catch((error: Error) => {
    console.error(error instanceof UsageError ? `${error.message}\n${USAGE}` : `simulate: ${error.message}`)
    process.exit(error instanceof UsageError ? 2 : 1)
  })
}
