/**
 * MQTT load generator for scripts/bench/ingest.ts. It runs in its own process so that publishing
 * for hundreds of devices does not share an event loop (or a CPU budget) with the broker under test.
 *
 *   bun scripts/bench/ingest-load.ts <config.json>
 *
 * The config file (LoadWorkerConfig) lists the broker URL, the device credentials and the SKUs. The
 * worker connects every device (iot/device.ts, QoS 1, the same in-flight window for every target),
 * prints `{"event":"ready"}`, then obeys one JSON command per line on stdin:
 *
 *   {"cmd":"run","mode":"saturate","warmupMs":3000,"durationMs":10000}
 *       every device keeps its whole in-flight window full: a new reading is queued for each PUBACK,
 *       so the fleet publishes exactly as fast as the broker acknowledges.
 *   {"cmd":"run","mode":"paced","rate":5000,"warmupMs":3000,"durationMs":10000}
 *       an aggregate `rate` readings/s handed out round-robin (a token bucket refilled every 10 ms).
 *   {"cmd":"exit"}
 *
 * and answers each run with `{"event":"window-start","at":ms}` and `{"event":"window-end","at":ms}`
 * (so the caller can sample the server's own counters at the edges of the measured window), then,
 * once everything queued has been acknowledged (or DRAIN_TIMEOUT_MS passed), `{"event":"result",...}`
 * (RunResult). Any failure prints `{"event":"error","message":...}` and exits with 1.
 */
import { readFileSync } from 'node:fs'
import { Device, fleetStats, type Reading, type WireReading } from '../../iot/device'
import { type DeviceCredentials, inParallel } from '../../iot/provision'

export interface LoadWorkerConfig {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883. */
  url: string
  devices: DeviceCredentials[]
  skus: string[]
  /** Publishes awaiting their PUBACK per device. */
  maxInFlight: number
  /** One reading in this many is a `count`; 0 = deltas only. */
  countEvery: number
}

export type RunCommand =
  | { cmd: 'run'; mode: 'saturate'; warmupMs: number; durationMs: number }
  | { cmd: 'run'; mode: 'paced'; rate: number; warmupMs: number; durationMs: number }
  | { cmd: 'exit' }

export interface RunResult {
  mode: 'saturate' | 'paced'
  /** Requested aggregate rate (paced only). */
  rate: number | null
  /** Length of the measured window. */
  seconds: number
  /** Readings acknowledged (PUBACK received) inside the window. */
  acknowledged: number
  ackedPerSecond: number
  /** Readings published for the first time inside the window. */
  sent: number
  /** Queued → PUBACK inside the window, in ms. */
  ackLatencyMs: { p50: number; p99: number; max: number }
  /** Paced mode: readings not generated because their device was too far behind. */
  skipped: number
  /** Worker CPU over the window, % of one core. */
  cpuPercent: number
  /** Still unacknowledged after the drain (should be 0). */
  unacknowledged: number
  /** Devices online at the end of the window. */
  online: number
  /** Since the worker started: every device's counters summed. */
  totals: { sent: number; acknowledged: number; resent: number; rejected: number; reconnects: number }
}

const TICK_MS = 10
const DRAIN_TIMEOUT_MS = 20_000
const CONNECT_CONCURRENCY = 50
/** Paced mode: a device this far behind gets no new readings until it catches up. */
const MAX_PENDING_PER_DEVICE = 5_000

const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)

/** Millisecond buckets up to a minute. */
class MsHistogram {
  private counts = new Uint32Array(60_001)
  private n = 0
  private max = 0

  add(ms: number) {
    this.counts[Math.min(Math.max(0, Math.round(ms)), 60_000)]++
    this.n++
    if (ms > this.max) this.max = ms
  }

  quantile(q: number): number {
    if (this.n === 0) return 0
    const rank = Math.max(1, Math.ceil(this.n * q))
    let seen = 0
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms]
      if (seen >= rank) return ms
    }
    return this.max
  }

  summary() {
    return { p50: this.quantile(0.5), p99: this.quantile(0.99), max: this.max }
  }
}

class Worker {
  private devices: Device[] = []
  /** Saturate mode is on: every PUBACK queues a replacement reading. */
  private refilling = false
  /** Inside the measured window: PUBACK latencies are recorded. */
  private measuring = false
  private latency = new MsHistogram()
  private countTick = 0

  constructor(private readonly config: LoadWorkerConfig) {}

  async connect(): Promise<number> {
    const started = performance.now()
    this.devices = this.config.devices.map(
      (c) => new Device({ url: this.config.url, ...c, maxInFlight: this.config.maxInFlight, connectTimeoutMs: 30_000 }),
    )
    for (const d of this.devices) {
      d.on('acknowledged', (readings) => this.onSettled(d, readings, true))
      d.on('rejected', (readings) => this.onSettled(d, readings, false))
      d.on('failed', (error) => fatal(error))
    }
    await inParallel(this.devices, CONNECT_CONCURRENCY, (d) => d.connect())
    return performance.now() - started
  }

  private onSettled(device: Device, readings: WireReading[], acked: boolean) {
    if (acked && this.measuring) {
      const now = Date.now()
      for (const r of readings) this.latency.add(now - r.ts)
    }
    if (this.refilling) for (let i = 0; i < readings.length; i++) device.enqueue(this.reading())
  }

  private reading(): Reading {
    const skus = this.config.skus
    const sku = skus[Math.floor(Math.random() * skus.length)]
    if (this.config.countEvery > 0 && ++this.countTick % this.config.countEvery === 0) {
      return { sku, type: 'count', value: Math.floor(Math.random() * 500) }
    }
    const size = 1 + Math.floor(Math.random() * 3)
    return { sku, type: 'delta', value: Math.random() < 0.5 ? -size : size }
  }

  private sum() {
    return fleetStats(this.devices)
  }

  async run(command: Extract<RunCommand, { cmd: 'run' }>): Promise<RunResult> {
    this.latency = new MsHistogram()
    let generator: Paced | undefined
    let timer: ReturnType<typeof setInterval> | undefined
    if (command.mode === 'saturate') {
      this.refilling = true
      for (const d of this.devices) for (let i = 0; i < this.config.maxInFlight; i++) d.enqueue(this.reading())
    } else {
      if (!(command.rate > 0)) throw new Error(`paced mode needs a rate > 0 (got ${command.rate})`)
      generator = new Paced(this.devices, command.rate, () => this.reading())
      timer = setInterval(() => generator!.generateUntil(performance.now()), TICK_MS)
    }

    await Bun.sleep(command.warmupMs)
    const before = this.sum()
    const cpuBefore = process.cpuUsage()
    const skippedBefore = generator?.skipped ?? 0
    const startedAt = performance.now()
    this.measuring = true
    emit({ event: 'window-start', at: Date.now() })

    await Bun.sleep(command.durationMs)
    const after = this.sum()
    const seconds = (performance.now() - startedAt) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    this.measuring = false
    emit({ event: 'window-end', at: Date.now() })

    this.refilling = false
    clearInterval(timer)
    const drained = await Promise.race([
      Promise.allSettled(this.devices.map((d) => d.drain())).then(() => true),
      Bun.sleep(DRAIN_TIMEOUT_MS).then(() => false),
    ])
    const end = this.sum()
    if (!drained && end.pending === 0) throw new Error('drain timed out with nothing pending')
    const acknowledged = after.acknowledged - before.acknowledged
    return {
      mode: command.mode,
      rate: command.mode === 'paced' ? command.rate : null,
      seconds,
      acknowledged,
      ackedPerSecond: acknowledged / seconds,
      sent: after.sent - before.sent,
      ackLatencyMs: this.latency.summary(),
      skipped: (generator?.skipped ?? 0) - skippedBefore,
      cpuPercent: ((cpu.user + cpu.system) / 1e6 / seconds) * 100,
      unacknowledged: end.pending,
      online: after.online,
      totals: { sent: end.sent, acknowledged: end.acknowledged, resent: end.resent, rejected: end.rejected, reconnects: end.connects - this.devices.length },
    }
  }

  async close() {
    await Promise.race([Promise.allSettled(this.devices.map((d) => d.close(1000))), Bun.sleep(5_000)])
  }
}

/** Hands out readings round-robin so that the fleet as a whole keeps to `rate` readings/s. */
class Paced {
  generated = 0
  skipped = 0
  private next = 0
  private readonly started = performance.now()

  constructor(
    private readonly devices: Device[],
    private readonly rate: number,
    private readonly reading: () => Reading,
  ) {}

  generateUntil(now: number) {
    const due = Math.floor(((now - this.started) / 1000) * this.rate) - this.generated - this.skipped
    for (let i = 0; i < due; i++) {
      const device = this.devices[this.next++ % this.devices.length]
      if (device.stats().pending >= MAX_PENDING_PER_DEVICE) {
        this.skipped++
        continue
      }
      device.enqueue(this.reading())
      this.generated++
    }
  }
}

function fatal(error: unknown): never {
  emit({ event: 'error', message: error instanceof Error ? error.message : String(error) })
  process.exit(1)
}

function readConfig(path: string | undefined): LoadWorkerConfig {
  if (!path) throw new Error('ingest-load.ts: pass the path of a LoadWorkerConfig JSON file')
  const config = JSON.parse(readFileSync(path, 'utf8')) as LoadWorkerConfig
  if (typeof config.url !== 'string') throw new Error('config: url must be a string')
  if (!Array.isArray(config.devices) || config.devices.length === 0) throw new Error('config: devices must be a non-empty array')
  if (!Array.isArray(config.skus) || config.skus.length === 0) throw new Error('config: skus must be a non-empty array')
  if (!Number.isInteger(config.maxInFlight) || config.maxInFlight < 1) throw new Error('config: maxInFlight must be a positive integer')
  if (!Number.isInteger(config.countEvery) || config.countEvery < 0) throw new Error('config: countEvery must be an integer >= 0')
  return config
}

async function main() {
  const config = readConfig(process.argv[2])
  const worker = new Worker(config)
  const connectMs = await worker.connect()
  emit({ event: 'ready', devices: config.devices.length, connectMs: Math.round(connectMs) })
  // One command at a time; stdin closing (the parent died) ends the worker too.
  for await (const line of console) {
    if (!line.trim()) continue
    const command = JSON.parse(line) as RunCommand
    if (command.cmd === 'exit') break
    if (command.cmd !== 'run') throw new Error(`unknown command ${line}`)
    emit({ event: 'result', ...(await worker.run(command)) })
  }
  await worker.close()
  process.exit(0)
}

if (import.meta.main) main().catch(fatal)
