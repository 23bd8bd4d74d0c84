/**
 * HTTP benchmark: Tessera's all-in-one server against a bare Elysia hello-world, and the split
 * topology (a gateway process in front of a process hosting auth), in one run.
 *
 *   bun scripts/bench/http.ts [--duration 10] [--warmup 2] [--rounds 2] [--concurrency 64]
 *                             [--min-ratio 0.40] [--client socket|fetch] [--tessera-cmd "bun kernel/main.ts"]
 *                             [--hop-duration 4]
 *
 * --tessera-cmd (or the TESSERA_CMD environment variable) starts another build or a stand-in
 * instead of `bun kernel/main.ts`. It is split on whitespace and run without a shell, so the pid
 * whose memory is read is the server's own; a leading `bun` means the Bun running this script.
 *
 * --client socket (the default) drives the servers with a minimal HTTP/1.1 client on raw sockets;
 * it needs well under half the CPU per request of fetch, so it saturates the bare baseline on a
 * two-core machine, where fetch cannot (a fetch-driven ratio flatters Tessera). The report says
 * when the baseline server was not saturated.
 *
 * Targets run alternately (bare, tessera, bare, tessera, ...). Each round starts a fresh server,
 * waits for it to be ready, reads its idle RSS, drives it from a separate load process
 * (scripts/bench/load.ts), reads its RSS again and stops it, so only one server exists at a time.
 * Per target the round with the most req/s is reported, because noise on a small machine only
 * ever slows a run down; RSS is the highest seen.
 *
 * The gateway hop's latency is measured apart, after the saturated rounds: all-in-one and split
 * again with one connection (one request at a time, --hop-duration seconds each, as many rounds),
 * and the hop is the difference of their best p50s. At saturation a p50 is the connection count
 * over the throughput (Little's law), so the saturated p50s differ by what the throughput target
 * already measures; one request at a time shows what the hop itself adds to a request. Exit code: 0 all targets pass, 1 a target
 * fails, 2 the benchmark could not run (a server did not start, a check request failed, ...).
 */
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import type { LoadClient, LoadConfig, LoadResult } from './load.ts'
import { freePort } from '../free-port'
import { isRunning, stopChild } from './children'

const ROOT = join(import.meta.dir, '..', '..')
const READY_TIMEOUT_MS = 30_000
const IDLE_SETTLE_MS = 2_000
const STOP_GRACE_MS = 3_000
const RSS_TARGET_MB = 120
// Below this share of one core the server was waiting for the load generator, not saturated.
const SATURATED_CPU_PERCENT = 85
// High enough that the limiter does its bookkeeping on every request but never answers 429.
const UNLIMITED = '100000000'
const BENCH_USER = { email: 'bench@example.com', password: 'bench-password-1', name: 'Bench' }

interface Options {
  durationSec: number
  warmupSec: number
  rounds: number
  concurrency: number
  minRatio: number
  tesseraCmd: string
  client: LoadClient
  hopDurationSec: number
}

/** What the load process hits once a server is up. */
interface LoadTarget {
  url: string
  headers: Record<string, string>
}

interface ServerSpec {
  name: string
  cmd: string[]
  env: Record<string, string>
  readyPath: string
  /** Brings a ready server to the state the benchmark needs and returns what to load. */
  prepare(baseUrl: string): Promise<LoadTarget>
  /** Another process this one needs (the split topology's plugin owner): started first, its env merged in. */
  companion?: () => Promise<{ env: Record<string, string>; proc: Subprocess }>
}

interface RunningServer {
  spec: ServerSpec
  proc: Subprocess
  baseUrl: string
  log: LogTail
}

interface RoundResult {
  load: LoadResult
  idleRssMb: number | null
  loadedRssMb: number | null
}

// ---------------------------------------------------------------------------------------------
// Options

function readOptions(): Options {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      rounds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '64' },
      'min-ratio': { type: 'string', default: '0.40' },
      'tessera-cmd': { type: 'string', default: process.env.TESSERA_CMD || 'bun kernel/main.ts' },
      client: { type: 'string', default: 'socket' },
      'hop-duration': { type: 'string', default: '4' },
    },
  })
  if (values.client !== 'fetch' && values.client !== 'socket') throw new Error('--client must be fetch or socket')
  return {
    durationSec: positiveNumber('--duration', values.duration),
    warmupSec: positiveNumber('--warmup', values.warmup, true),
    rounds: Math.round(positiveNumber('--rounds', values.rounds)),
    concurrency: Math.round(positiveNumber('--concurrency', values.concurrency)),
    minRatio: positiveNumber('--min-ratio', values['min-ratio']),
    tesseraCmd: values['tessera-cmd'],
    client: values.client,
    hopDurationSec: positiveNumber('--hop-duration', values['hop-duration']),
  }
}

function positiveNumber(flag: string, raw: string, allowZero = false): number {
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) throw new Error(`${flag} must be a positive number`)
  return n
}

/** Splits a command line on whitespace; a leading `bun` becomes this Bun, which may not be on PATH. */
function commandLine(text: string): string[] {
  const parts = text.trim().split(/\s+/)
  if (parts[0] === 'bun') parts[0] = process.execPath
  return parts
}

// ---------------------------------------------------------------------------------------------
// Servers under test

function bareElysia(): ServerSpec {
  return {
    name: 'bare elysia',
    cmd: [process.execPath, join(import.meta.dir, 'bare-elysia.ts')],
    env: {},
    readyPath: '/',
    prepare: async (baseUrl) => ({ url: `${baseUrl}/`, headers: {} }),
  }
}

const TESSERA_ENV = {
  DATABASE_URL: 'sqlite::memory:',
  LOG_LEVEL: 'warn',
  MQTT_PORT: '0',
  RATE_LIMIT_IP_PER_MIN: UNLIMITED,
  RATE_LIMIT_USER_PER_MIN: UNLIMITED,
}

function tessera(command: string): ServerSpec {
  return { name: 'tessera', cmd: commandLine(command), env: TESSERA_ENV, readyPath: '/health/ready', prepare: prepareTessera }
}

/**
 * The split topology: a gateway process (`PLUGINS=gateway`) in front of a process hosting auth
 * (static route), so /auth/me crosses the gateway hop: token checked at the gateway, proxied over a
 * keep-alive connection, checked again by the owner. CPU is the gateway's.
 */
function split(command: string): ServerSpec {
  return {
    name: 'split (gateway → auth)',
    cmd: commandLine(command),
    env: { ...TESSERA_ENV, PLUGINS: 'gateway' },
    readyPath: '/health/ready',
    prepare: prepareTessera,
    companion: async () => {
      const owner = await startServer({ ...tessera(command), name: 'auth owner', env: { ...TESSERA_ENV, PLUGINS: 'auth' } })
      return { env: { PLUGIN_ROUTES: `auth=${owner.baseUrl}` }, proc: owner.proc }
    },
  }
}

/** Registers the bench user and checks that the token opens /auth/me before any load is sent. */
async function prepareTessera(baseUrl: string): Promise<LoadTarget> {
  const registered = await fetch(`${baseUrl}/api/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(BENCH_USER),
  })
  if (registered.status !== 201) {
    throw new Error(`POST /api/v1/auth/register answered ${registered.status}: ${await registered.text()}`)
  }
  const { accessToken } = (await registered.json()) as { accessToken?: unknown }
  if (typeof accessToken !== 'string' || !accessToken) throw new Error('register response has no accessToken')

  const target = { url: `${baseUrl}/api/v1/auth/me`, headers: { authorization: `Bearer ${accessToken}` } }
  const me = await fetch(target.url, { headers: target.headers })
  if (me.status !== 200) throw new Error(`GET /api/v1/auth/me answered ${me.status}: ${await me.text()}`)
  await me.arrayBuffer()
  return target
}

// ---------------------------------------------------------------------------------------------
// Child processes

const children = new Set<Subprocess>()

/** Keeps the last few KB of a child's output to explain a failure without flooding the report. */
class LogTail {
  private text = ''
  append(chunk: string): void {
    this.text = (this.text + chunk).slice(-4000)
  }
  toString(): string {
    return this.text.trim()
  }
}

async function drainInto(stream: ReadableStream<Uint8Array>, log: LogTail): Promise<void> {
  const decoder = new TextDecoder()
  for await (const chunk of stream) log.append(decoder.decode(chunk, { stream: true }))
}

function spawnChild(cmd: string[], env: Record<string, string>): Subprocess<'ignore', 'pipe', 'pipe'> {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  children.add(proc)
  void proc.exited.then(() => children.delete(proc))
  return proc
}



async function startServer(spec: ServerSpec): Promise<RunningServer> {
  const port = await freePort()
  const proc = spawnChild(spec.cmd, { ...spec.env, PORT: String(port) })
  const log = new LogTail()
  void drainInto(proc.stdout, log)
  void drainInto(proc.stderr, log)
  const server = { spec, proc, baseUrl: `http://127.0.0.1:${port}`, log }
  await waitUntilReady(server)
  return server
}

async function waitUntilReady({ spec, proc, baseUrl, log }: RunningServer): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (!isRunning(proc)) throw new Error(`${spec.name} exited (code ${proc.exitCode ?? proc.signalCode}) before it was ready:\n${log}`)
    try {
      const response = await fetch(`${baseUrl}${spec.readyPath}`, { signal: AbortSignal.timeout(1_000) })
      await response.arrayBuffer()
      if (response.status === 200) return
    } catch {
      // not listening yet
    }
    await Bun.sleep(100)
  }
  throw new Error(`${spec.name} did not answer 200 on ${spec.readyPath} within ${READY_TIMEOUT_MS / 1000} s:\n${log}`)
}


function killAllChildren(): void {
  for (const proc of children) if (isRunning(proc)) proc.kill('SIGKILL')
}

/** Resident memory in MB from /proc/<pid>/status; null where /proc is not available. */
async function readRssMb(pid: number): Promise<number | null> {
  try {
    const status = await Bun.file(`/proc/${pid}/status`).text()
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
    return kb ? Number(kb) / 1024 : null
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring

async function runLoadProcess(target: LoadTarget, serverPid: number, options: Options): Promise<LoadResult> {
  const config: LoadConfig = {
    ...target,
    serverPid,
    client: options.client,
    concurrency: options.concurrency,
    warmupMs: options.warmupSec * 1000,
    durationMs: options.durationSec * 1000,
  }
  // Bun caps concurrent fetches at 256 by default; lift the cap for higher --concurrency.
  const maxRequests = String(Math.max(256, options.concurrency))
  const proc = spawnChild([process.execPath, join(import.meta.dir, 'load.ts'), JSON.stringify(config)], {
    BUN_CONFIG_MAX_HTTP_REQUESTS: maxRequests,
  })
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`load generator exited with ${code}:\n${stderr.trim()}`)
  return JSON.parse(stdout) as LoadResult
}

async function benchmarkRound(spec: ServerSpec, options: Options): Promise<RoundResult> {
  const companion = await spec.companion?.()
  const server = await startServer(companion ? { ...spec, env: { ...spec.env, ...companion.env } } : spec).catch(async (error) => {
    if (companion) await stopChild(companion.proc, STOP_GRACE_MS)
    throw error
  })
  try {
    await Bun.sleep(IDLE_SETTLE_MS)
    // Read before prepare(): registering hashes a password, which would inflate the idle figure.
    const idleRssMb = await readRssMb(server.proc.pid)
    const target = await spec.prepare(server.baseUrl)
    const load = await runLoadProcess(target, server.proc.pid, options)
    const loadedRssMb = await readRssMb(server.proc.pid)
    if (!isRunning(server.proc)) throw new Error(`${spec.name} died under load:\n${server.log}`)
    return { load, idleRssMb, loadedRssMb }
  } finally {
    await stopChild(server.proc, STOP_GRACE_MS)
    if (companion) await stopChild(companion.proc, STOP_GRACE_MS)
  }
}

async function benchmarkAlternately(specs: ServerSpec[], options: Options, label = 'round'): Promise<Map<ServerSpec, RoundResult[]>> {
  const results = new Map(specs.map((spec) => [spec, [] as RoundResult[]]))
  for (let round = 1; round <= options.rounds; round++) {
    for (const spec of specs) {
      const result = await benchmarkRound(spec, options)
      results.get(spec)!.push(result)
      console.error(`${label} ${round}/${options.rounds} ${spec.name.padEnd(22)} ${describeRound(result)}`)
    }
  }
  return results
}

function describeRound({ load, idleRssMb, loadedRssMb }: RoundResult): string {
  return (
    `${formatInt(load.rps)} req/s  p50 ${load.p50Ms.toFixed(2)} ms  p99 ${load.p99Ms.toFixed(2)} ms  ` +
    `errors ${load.errors}  cpu server ${formatPercent(load.serverCpuPercent)} load ${formatPercent(load.cpuPercent)}  ` +
    `rss ${formatMb(idleRssMb)} -> ${formatMb(loadedRssMb)} MB`
  )
}

// ---------------------------------------------------------------------------------------------
// Summary

interface Summary {
  name: string
  best: LoadResult
  idleRssMb: number | null
  loadedRssMb: number | null
}

/** Best round by req/s for throughput; the highest RSS seen, so the memory check cannot pass by luck. */
function summarize(spec: ServerSpec, rounds: RoundResult[]): Summary {
  const best = rounds.reduce((a, b) => (b.load.rps > a.load.rps ? b : a))
  return {
    name: spec.name,
    best: best.load,
    idleRssMb: maxOrNull(rounds.map((r) => r.idleRssMb)),
    loadedRssMb: maxOrNull(rounds.map((r) => r.loadedRssMb)),
  }
}

function maxOrNull(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null)
  return known.length ? Math.max(...known) : null
}

/** The round with the lowest p50, for the one-connection latency rounds. */
function fastest(rounds: RoundResult[]): LoadResult {
  return rounds.map((r) => r.load).reduce((a, b) => (b.p50Ms < a.p50Ms ? b : a))
}

/** Prints the report and returns whether every target passed. */
function printReport(bare: Summary, tessera: Summary, split: Summary, hopRounds: { tessera: LoadResult; split: LoadResult }, options: Options): boolean {
  const throughput = throughputReport(bare, tessera, split, options)
  const hop = splitReport(tessera, split, hopRounds)
  const memory = memoryReport(bare, tessera)
  console.log(['', ...throughput.lines, '', ...hop.lines, '', ...memory.lines, '', ...cpuReport(bare, tessera, split)].join('\n'))
  return throughput.passed && hop.passed && memory.passed
}

/**
 * Split topology targets: the gateway hop adds under 1 ms at p50 (one request at a time) and keeps
 * >= 40 % of all-in-one req/s (saturated).
 */
function splitReport(tessera: Summary, split: Summary, hop: { tessera: LoadResult; split: LoadResult }): { lines: string[]; passed: boolean } {
  const added = hop.split.p50Ms - hop.tessera.p50Ms
  const ratio = split.best.rps / tessera.best.rps
  const passed = added < 1 && ratio >= 0.4
  const ms = (n: number) => n.toFixed(2)
  return {
    lines: [
      'one connection (one request at a time), best p50 of the rounds:',
      '',
      '| target | req/s | p50 ms | p99 ms |',
      '|---|---:|---:|---:|',
      `| ${tessera.name} | ${formatInt(hop.tessera.rps)} | ${ms(hop.tessera.p50Ms)} | ${ms(hop.tessera.p99Ms)} |`,
      `| ${split.name} | ${formatInt(hop.split.rps)} | ${ms(hop.split.p50Ms)} | ${ms(hop.split.p99Ms)} |`,
      '',
      `gateway hop: p50 +${ms(added)} ms one request at a time (target < 1 ms) ${added < 1 ? 'PASS' : 'FAIL'}; ` +
        `req/s ${ratio.toFixed(2)} of all-in-one at saturation (target >= 0.40) ${ratio >= 0.4 ? 'PASS' : 'FAIL'}`,
      `(at saturation the p50s differ by +${ms(split.best.p50Ms - tessera.best.p50Ms)} ms: ${tessera.best.p50Ms.toFixed(2)} vs ${split.best.p50Ms.toFixed(2)} ms, queueing behind the lower throughput)`,
    ],
    passed,
  }
}

function throughputReport(bare: Summary, tessera: Summary, split: Summary, options: Options): { lines: string[]; passed: boolean } {
  const row = ({ name, best }: Summary) =>
    `| ${name} | ${formatInt(best.rps)} | ${best.p50Ms.toFixed(2)} | ${best.p99Ms.toFixed(2)} | ${best.errors} |`
  const ratio = tessera.best.rps / bare.best.rps
  const passed = ratio >= options.minRatio
  const lines = [
    `GET /api/v1/auth/me (tessera) vs GET / (bare elysia): ${options.concurrency} ${options.client} connections, ` +
      `${options.warmupSec} s warm-up + ${options.durationSec} s, best of ${options.rounds} rounds`,
    '',
    '| target | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    row(bare),
    row(tessera),
    row(split),
    '',
    `ratio (tessera / bare) req/s: ${ratio.toFixed(2)}`,
    `ratio (tessera / bare) p99: ${(tessera.best.p99Ms / bare.best.p99Ms).toFixed(2)}`,
    `target: >= ${options.minRatio.toFixed(2)} ${passed ? 'PASS' : 'FAIL'}`,
  ]
  if (tessera.best.errors > 0 || bare.best.errors > 0) lines.push('warning: some requests failed; req/s and latencies exclude them')
  return { lines, passed }
}

function memoryReport(bare: Summary, tessera: Summary): { lines: string[]; passed: boolean } {
  const passed = tessera.idleRssMb !== null && tessera.idleRssMb < RSS_TARGET_MB
  const lines = [
    `idle RSS: ${formatMb(tessera.idleRssMb)} MB (target < ${RSS_TARGET_MB} MB) ${passed ? 'PASS' : 'FAIL'}`,
    `RSS after load: ${formatMb(tessera.loadedRssMb)} MB`,
    `bare elysia RSS: idle ${formatMb(bare.idleRssMb)} MB, after load ${formatMb(bare.loadedRssMb)} MB`,
  ]
  return { lines, passed }
}

/** Shows whether the servers or the load generator were the bottleneck. */
function cpuReport(bare: Summary, tessera: Summary, split: Summary): string[] {
  const lines = [
    `CPU during load (% of one core): bare elysia ${formatPercent(bare.best.serverCpuPercent)}, ` +
      `tessera ${formatPercent(tessera.best.serverCpuPercent)}, split gateway ${formatPercent(split.best.serverCpuPercent)}; ` +
      `load generator ${formatPercent(bare.best.cpuPercent)} / ${formatPercent(tessera.best.cpuPercent)}`,
  ]
  if (bare.best.serverCpuPercent !== null && bare.best.serverCpuPercent < SATURATED_CPU_PERCENT) {
    lines.push('note: bare elysia was not saturated, so the load generator limited it and the req/s ratio is an upper bound')
  }
  return lines
}

function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

function formatPercent(percent: number | null): string {
  return percent === null ? 'n/a' : `${percent.toFixed(0)}%`
}

function formatMb(mb: number | null): string {
  return mb === null ? 'n/a' : mb.toFixed(0)
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = readOptions()
  const bareSpec = bareElysia()
  const tesseraSpec = tessera(options.tesseraCmd)
  const splitSpec = split(options.tesseraCmd)
  const results = await benchmarkAlternately([bareSpec, tesseraSpec, splitSpec], options)
  const single = { ...options, concurrency: 1, durationSec: options.hopDurationSec }
  const hop = await benchmarkAlternately([tesseraSpec, splitSpec], single, 'one connection')
  const passed = printReport(
    summarize(bareSpec, results.get(bareSpec)!),
    summarize(tesseraSpec, results.get(tesseraSpec)!),
    summarize(splitSpec, results.get(splitSpec)!),
    { tessera: fastest(hop.get(tesseraSpec)!), split: fastest(hop.get(splitSpec)!) },
    options,
  )
  return passed ? 0 : 1
}

// A benchmark must never leave servers behind, whether it ends normally, fails or is interrupted.
process.on('exit', killAllChildren)
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping all servers`)
    killAllChildren()
    process.exit(code)
  })
}

try {
  process.exitCode = await main()
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 2
} finally {
  killAllChildren()
}
