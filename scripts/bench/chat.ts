/**
 * Chat benchmark: Tessera's chat plugin against a bare Socket.IO server on the same engine, in one run.
 *
 *   bun scripts/bench/chat.ts [--pairs 1000] [--duration 10] [--warmup 3] [--rate 1000] [--windows 1,4,16]
 *                             [--min-ratio 0.60] [--max-p99 50] [--database sqlite|<postgres url>]
 *
 * For each target: start it as a child process (the bare server is scripts/bench/bare-socketio.ts;
 * Tessera is `bun kernel/main.ts` with PLUGINS=auth,chat), connect 2 × pairs clients from one load
 * process (scripts/bench/chat-load.ts) in `pairs` conversations (a customer and an agent each;
 * Tessera assigns them, capacity 1 per agent), read the RSS with every client connected and idle,
 * then measure:
 * - closed loop: every pair ping-pongs with N messages in flight (a party answers as soon as the
 *   other's message arrives), once per N in `--windows`: messages delivered per second, with p50/p99
 *   delivery latency (send → `message:new` at the other party); the best N counts, i.e. the most
 *   the server sustains (more in flight helps until the server saturates, then only adds latency);
 * - fixed rate (measured first): `--rate` messages per second in total, open loop: p99 delivery latency.
 * Ratio = Tessera's closed-loop messages/s over the bare server's. Exit code: 0 targets met, 1 not
 * met, 2 the benchmark could not run. BENCH_PROFILE=<dir> writes a CPU profile of the Tessera server
 * (.cpuprofile) to <dir> and prints the measured windows (ms after spawn, to cut the set-up out); `--only tessera|bare` measures one target (no ratio) while tuning.
 */
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { rmSync } from 'node:fs'
import type { Subprocess } from 'bun'
import { freePort } from '../free-port'
import type { RunMessage, RunResult, SetupMessage } from './chat-load'
import { isRunning, stopChild } from './children'

const ROOT = join(import.meta.dir, '..', '..')
const UNLIMITED = '100000000'
const ADMIN = { email: 'bench-admin@example.com', password: 'bench-admin-password-1' }

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    pairs: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1000' },
    windows: { type: 'string', default: '1,4,16' },
    'min-ratio': { type: 'string', default: '0.60' },
    'max-p99': { type: 'string', default: '50' },
    database: { type: 'string', default: 'sqlite' },
    /** `tessera` alone skips the baseline (a quick look while tuning; no ratio) */
    only: { type: 'string' },
  },
})
const options = {
  pairs: Number(values.pairs),
  durationMs: Number(values.duration) * 1000,
  warmupMs: Number(values.warmup) * 1000,
  rate: Number(values.rate),
  windows: values.windows.split(',').map(Number),
  minRatio: Number(values['min-ratio']),
  maxP99: Number(values['max-p99']),
  database: values.database,
}

/** BENCH_PROFILE=<dir>: a CPU profile of the Tessera server (.cpuprofile) goes there; the measured windows are printed. */
const profileDir = process.env.BENCH_PROFILE
const children = new Set<Subprocess>()
function spawn(cmd: string[], env: Record<string, string>, ipc?: (m: any) => void) {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', ipc })
  children.add(proc)
  let log = ''
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) log = (log + new TextDecoder().decode(c)).slice(-4000)
  }
  void drain(proc.stdout as ReadableStream<Uint8Array>)
  void drain(proc.stderr as ReadableStream<Uint8Array>)
  void proc.exited.then(() => children.delete(proc))
  return { proc, log: () => log }
}

/** Server CPU time per delivered message, in µs: independent of how busy the machine is (mostly). */
const cpuPerMessage = (r: RunResult & { serverCpuPercent: number }) => (r.serverCpuPercent / 100 / (r.delivered / r.seconds)) * 1e6

async function rssMb(pid: number) {
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1]
  return Number(kb) / 1024
}

/** CPU seconds (user + system) of a process so far. */
async function cpuSeconds(pid: number) {
  const fields = (await Bun.file(`/proc/${pid}/stat`).text()).split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function waitReady(url: string, proc: Subprocess, log: () => string) {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (!isRunning(proc)) throw new Error(`server exited before it was ready:\n${log()}`)
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) })
      if (r.status === 200) return
    } catch {}
    await Bun.sleep(100)
  }
  throw new Error(`server not ready:\n${log()}`)
}

async function json(url: string, method: string, body?: unknown, token?: string) {
  const r = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const data: any = await r.json().catch(() => undefined)
  if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${JSON.stringify(data)}`)
  return data
}

async function inBatches<T, R>(items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = []
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))))
  return out
}

/** 1,000 customers and 1,000 agents (agents re-sign in after the role change, which revokes older tokens). */
async function users(base: string, pairs: number) {
  const api = `${base}/api/v1/auth`
  const admin = (await json(`${api}/login`, 'POST', ADMIN)).accessToken
  const register = (role: string) => (i: number) =>
    json(`${api}/register`, 'POST', { email: `${role}-${i}@bench.test`, password: 'bench-password-1', name: `${role} ${i}` })
  const indexes = Array.from({ length: pairs }, (_, i) => i)
  const customers = (await inBatches(indexes, 32, register('customer'))).map((r) => r.accessToken as string)
  const agentIds = (await inBatches(indexes, 32, register('agent'))).map((r) => r.user.id as string)
  await inBatches(agentIds, 32, (id) => json(`${api}/users/${id}`, 'PATCH', { roles: ['agent'] }, admin))
  const agents = (await inBatches(indexes, 32, (i) => json(`${api}/login`, 'POST', { email: `agent-${i}@bench.test`, password: 'bench-password-1' }))).map(
    (r) => r.accessToken as string,
  )
  return { customers, agents }
}

interface TargetResult {
  name: string
  baseRssMb: number
  connectedRssMb: number
  closed: RunResult & { serverCpuPercent: number; window: number }
  rate: RunResult & { serverCpuPercent: number }
}

async function measure(name: 'bare' | 'tessera'): Promise<TargetResult> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const sqliteFile = join(tmpdir(), `tessera-chat-bench-${Date.now()}.db`)
  const server =
    name === 'bare'
      ? spawn([process.execPath, join(import.meta.dir, 'bare-socketio.ts')], { PORT: String(port) })
      : spawn([process.execPath, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), join(ROOT, 'kernel/main.ts')], {
          PORT: String(port),
          HOST: '127.0.0.1',
          PLUGINS: 'auth,chat',
          DATABASE_URL: options.database === 'sqlite' ? `sqlite:${sqliteFile}` : options.database,
          LOG_LEVEL: 'warn',
          MQTT_PORT: '0',
          JWT_SECRET: 'bench-secret-bench-secret-bench-secret-01',
          ADMIN_EMAIL: ADMIN.email,
          ADMIN_PASSWORD: ADMIN.password,
          PASSWORD_HASH_MEMORY_KIB: '1024',
          PASSWORD_HASH_TIME_COST: '1',
          RATE_LIMIT_IP_PER_MIN: UNLIMITED,
          RATE_LIMIT_USER_PER_MIN: UNLIMITED,
          LOGIN_MAX_FAILURES_PER_IP: '100000',
          REALTIME_EVENTS_PER_SECOND: '100000',
          CHAT_MESSAGES_PER_SECOND: '100000',
          CHAT_AGENT_CAPACITY: '1',
        })
  const spawnedAt = performance.now()
  try {
    await waitReady(`${base}${name === 'bare' ? '/' : '/health/ready'}`, server.proc, server.log)
    const accounts = name === 'bare' ? { customers: Array(options.pairs).fill(''), agents: Array(options.pairs).fill('') } : await users(base, options.pairs)
    await Bun.sleep(2000)
    const baseRssMb = await rssMb(server.proc.pid)

    let pending: { resolve: (m: any) => void; reject: (e: Error) => void } | undefined
    const load = spawn([process.execPath, join(import.meta.dir, 'chat-load.ts')], {}, (m) => {
      if (m.type === 'error') pending?.reject(new Error(`load process: ${m.message}`))
      else pending?.resolve(m)
    })
    const ask = (m: SetupMessage | RunMessage) =>
      new Promise<any>((resolve, reject) => {
        pending = { resolve, reject }
        load.proc.send(m)
      })
    try {
      const t0 = Date.now()
      await ask({ type: 'setup', url: base, mode: name, customers: accounts.customers, agents: accounts.agents })
      console.error(`${name}: ${options.pairs * 2} clients connected in ${options.pairs} conversations (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
      await Bun.sleep(3000)
      const connectedRssMb = await rssMb(server.proc.pid)
      const run = async (m: RunMessage) => {
        const cpu0 = await cpuSeconds(server.proc.pid)
        const t = performance.now()
        const { result } = (await ask(m)) as { result: RunResult }
        const serverCpuPercent = (((await cpuSeconds(server.proc.pid)) - cpu0) / ((performance.now() - t) / 1000)) * 100
        if (profileDir && name === 'tessera') console.error(`${name}: profile window ${m.type}${m.window ?? ''}: ${Math.round(t - spawnedAt + m.warmupMs)}-${Math.round(t - spawnedAt + m.warmupMs + m.durationMs)} ms after spawn`)
        return { ...result, serverCpuPercent }
      }
      // The fixed rate first, on a fresh server: the closed-loop runs leave backlogs and recovery buffers behind.
      const rate = await run({ type: 'rate', warmupMs: options.warmupMs, durationMs: options.durationMs, perSecond: options.rate })
      console.error(`${name}: ${options.rate} msg/s: p99 ${rate.p99Ms.toFixed(1)} ms`)
      let closed: (RunResult & { serverCpuPercent: number; window: number }) | undefined
      for (const window of options.windows) {
        const r = { ...(await run({ type: 'closed', warmupMs: options.warmupMs, durationMs: options.durationMs, window })), window }
        console.error(
          `${name}: closed loop, ${window} in flight per pair: ${Math.round(r.delivered / r.seconds)} msg/s, p99 ${r.p99Ms.toFixed(1)} ms, server CPU ${r.serverCpuPercent.toFixed(0)}% (${cpuPerMessage(r).toFixed(0)} µs/msg)`,
        )
        if (!closed || r.delivered / r.seconds > closed.delivered / closed.seconds) closed = r
      }
      if (!closed) throw new Error('--windows is empty')
      if (!isRunning(server.proc)) throw new Error(`${name} died under load:\n${server.log()}`)
      return { name: name === 'bare' ? 'bare socket.io' : 'tessera chat', baseRssMb, connectedRssMb, closed, rate }
    } finally {
      load.proc.send({ type: 'exit' })
      await stopChild(load.proc, 2000)
    }
  } finally {
    await stopChild(server.proc, 5000)
    for (const suffix of ['', '-wal', '-shm']) rmSync(sqliteFile + suffix, { force: true })
  }
}

function report(results: TargetResult[]) {
  const [bare, tessera] = results
  const mps = (r: RunResult) => r.delivered / r.seconds
  const per1000 = (r: TargetResult) => ((r.connectedRssMb - r.baseRssMb) / (options.pairs * 2)) * 1000
  const row = (r: TargetResult) =>
    `| ${r.name} | ${Math.round(mps(r.closed)).toLocaleString('en-US')} (${r.closed.window}) | ${r.closed.p50Ms.toFixed(1)} | ${r.closed.p99Ms.toFixed(1)} | ` +
    `${Math.round(mps(r.rate)).toLocaleString('en-US')} | ${r.rate.p50Ms.toFixed(1)} | ${r.rate.p99Ms.toFixed(1)} | ` +
    `${r.baseRssMb.toFixed(0)} → ${r.connectedRssMb.toFixed(0)} | ${per1000(r).toFixed(1)} | ${r.closed.serverCpuPercent.toFixed(0)}% / ${r.closed.cpuPercent.toFixed(0)}% | ${cpuPerMessage(r.closed).toFixed(0)} | ${r.closed.errors + r.rate.errors} |`
  const ratio = mps(tessera.closed) / mps(bare.closed)
  const ratioOk = ratio >= options.minRatio
  const p99Ok = tessera.rate.p99Ms < options.maxP99 && mps(tessera.rate) >= options.rate * 0.95
  console.log(
    [
      '',
      `${options.pairs * 2} clients in ${options.pairs} conversations (database: ${options.database}); closed loop (best of ${options.windows.join(', ')} in flight per pair) and ${options.rate} msg/s, ${options.warmupMs / 1000} s warm-up + ${options.durationMs / 1000} s each`,
      '',
      `| target | closed loop msg/s (in flight per pair) | p50 ms | p99 ms | fixed-rate msg/s | p50 ms | p99 ms | RSS MB idle → ${options.pairs * 2} clients | MB per 1,000 idle connections | CPU server / load (closed loop) | server CPU µs/msg | errors |`,
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      row(bare),
      row(tessera),
      '',
      `ratio (tessera / bare) msg/s: ${ratio.toFixed(2)} (target >= ${options.minRatio.toFixed(2)}) ${ratioOk ? 'PASS' : 'FAIL'}`,
      `p99 at ${options.rate} msg/s: ${tessera.rate.p99Ms.toFixed(1)} ms (target < ${options.maxP99} ms) ${p99Ok ? 'PASS' : 'FAIL'}`,
    ].join('\n'),
  )
  if (bare.closed.serverCpuPercent < 85) console.log('note: the bare server was not saturated (the load process limited it), so the ratio is an upper bound')
  return ratioOk && p99Ok
}

process.on('exit', () => {
  for (const proc of children) if (isRunning(proc)) proc.kill('SIGKILL')
})
try {
  if (values.only === 'tessera' || values.only === 'bare') {
    const r = await measure(values.only)
    console.log(JSON.stringify({ closed: r.closed, rate: r.rate, baseRssMb: r.baseRssMb, connectedRssMb: r.connectedRssMb }))
  } else {
    const results = [await measure('bare'), await measure('tessera')]
    process.exitCode = report(results) ? 0 : 1
  }
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 2
}
