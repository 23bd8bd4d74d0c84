/**
 * Start-up benchmark: how long from spawning `bun kernel/main.ts` (all plugins, embedded
 * defaults, a fresh SQLite file, so migrations run) until GET /health/ready answers 200, and the
 * idle RSS a few seconds later. Runs `--runs` times (default 5) and prints a table.
 *
 *   bun scripts/bench/startup.ts [--runs 5]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort } from '../free-port'

const ROOT = join(import.meta.dir, '..', '..')
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const runs = Number(values.runs)
const TARGET_MS = 1000
const RSS_TARGET_MB = 120

const rssMb = async (pid: number) => {
  const status = await Bun.file(`/proc/${pid}/status`).text()
  return Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024
}

const results: { readyMs: number; rss: number }[] = []
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-startup-'))
  const port = await freePort()
  const t0 = performance.now()
  const proc = Bun.spawn([process.execPath, join(ROOT, 'kernel/main.ts')], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), MQTT_PORT: '0', LOG_LEVEL: 'warn', DATABASE_URL: `sqlite:${join(dir, 'tessera.db')}` },
    stdout: 'ignore',
    stderr: 'inherit',
  })
  let readyMs = NaN
  while (performance.now() - t0 < 15_000) {
    const ok = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status === 200, () => false)
    if (ok) {
      readyMs = performance.now() - t0
      break
    }
    await Bun.sleep(5)
  }
  await Bun.sleep(2000)
  results.push({ readyMs, rss: await rssMb(proc.pid) })
  proc.kill('SIGTERM')
  await proc.exited
  rmSync(dir, { recursive: true, force: true })
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log('| run | ready after (ms) | idle RSS (MB) |\n|---:|---:|---:|')
results.forEach((r, i) => console.log(`| ${i + 1} | ${r.readyMs.toFixed(0)} | ${r.rss.toFixed(0)} |`))
const ready = median(results.map((r) => r.readyMs))
const rss = Math.max(...results.map((r) => r.rss))
console.log(`\nmedian time to ready: ${ready.toFixed(0)} ms (target < ${TARGET_MS} ms) ${ready < TARGET_MS ? 'PASS' : 'FAIL'}`)
console.log(`highest idle RSS: ${rss.toFixed(0)} MB (target < ${RSS_TARGET_MB} MB) ${rss < RSS_TARGET_MB ? 'PASS' : 'FAIL'}`)
process.exit(ready < TARGET_MS && rss < RSS_TARGET_MB ? 0 : 1)
