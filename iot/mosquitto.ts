/**
 * A throwaway Mosquitto (Debian's /usr/sbin/mosquitto) for tests and benchmarks: its own temp
 * directory, config, optional password file, a port on 127.0.0.1, and the ability to be killed and
 * restarted on the same port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { freePort } from '../scripts/free-port'

export { freePort }
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto'
export const MOSQUITTO_PASSWD_BIN = process.env.MOSQUITTO_PASSWD_BIN ?? '/usr/bin/mosquitto_passwd'

export interface MosquittoOptions {
  /** Defaults to a free port. */
  port?: number
  /** username → password; when given, anonymous clients are refused. */
  users?: Record<string, string>
  /** Contents of an ACL file (`user <name>` / `topic write <filter>` lines). */
  acl?: string
  /** Keep sessions and retained messages in a file that survives restarts (see `save`). */
  persistence?: boolean
  /** Extra config lines. */
  config?: string[]
}

export interface Mosquitto {
  readonly port: number
  readonly url: string
  readonly dir: string
  /** SIGSTOP: the broker hangs with its sockets open (a later `kill` still works). */
  pause(): void
  /** SIGKILL: no clean shutdown, nothing saved. */
  kill(): Promise<void>
  /** Starts the broker again with the same config and port. */
  restart(): Promise<void>
  /** Writes the persistence file now (SIGUSR1) and waits until it is on disk. */
  save(): Promise<void>
  /** The broker's log so far. */
  log(): string
  /** Stops the broker and removes its directory. */
  stop(): Promise<void>
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const port = options.port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'tessera-mosquitto-'))
  const configFile = join(dir, 'mosquitto.conf')
  writeFileSync(configFile, configLines(port, dir, options).join('\n') + '\n')
  if (options.users) writePasswordFile(join(dir, 'passwd'), options.users)
  if (options.acl) writeFileSync(join(dir, 'acl'), options.acl + '\n')

  let child: ChildProcess | undefined
  let stderr = ''
  const logFile = join(dir, 'mosquitto.log')
  const log = () => stderr + (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
  const launch = async () => {
    // Only start-up errors reach stderr; everything else goes to the log file.
    child = spawn(MOSQUITTO_BIN, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    await waitForListener(port, child, log)
  }
  const terminate = async (signal: NodeJS.Signals) => {
    const proc = child
    child = undefined
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill(signal)
    await exited
  }

  await launch().catch((error) => {
    rmSync(dir, { recursive: true, force: true })
    throw error
  })
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    pause: () => void child?.kill('SIGSTOP'),
    kill: () => terminate('SIGKILL'),
    restart: launch,
    save: () => saveDatabase(child, join(dir, 'mosquitto.db')),
    log,
    async stop() {
      await terminate('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function configLines(port: number, dir: string, options: MosquittoOptions): string[] {
  return [
    `listener ${port} 127.0.0.1`,
    // Running as root, Mosquitto would switch to the `mosquitto` user, which cannot use our temp dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    options.users ? `allow_anonymous false\npassword_file ${join(dir, 'passwd')}` : 'allow_anonymous true',
    'max_queued_messages 0',
    // Otherwise Nagle's algorithm holds back PUBACKs behind the client's delayed ACK (~40 ms per burst).
    'set_tcp_nodelay true',
    ...(options.acl ? [`acl_file ${join(dir, 'acl')}`] : []),
    options.persistence ? `persistence true\npersistence_location ${dir}/\nautosave_interval 0` : 'persistence false',
    `log_dest file ${join(dir, 'mosquitto.log')}`,
    ...(options.config ?? []),
  ]
}

function writePasswordFile(file: string, users: Record<string, string>) {
  Object.entries(users).forEach(([user, password], i) => {
    const args = [...(i === 0 ? ['-c'] : []), '-b', file, user, password]
    const result = spawnSync(MOSQUITTO_PASSWD_BIN, args, { encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`mosquitto_passwd failed: ${result.stderr || result.error?.message}`)
  })
}


async function waitForListener(port: number, child: ChildProcess, log: () => string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited with code ${child.exitCode}:\n${log()}`)
    if (await accepts(port)) return
    await sleep(20)
  }
  child.kill('SIGKILL')
  throw new Error(`mosquitto did not listen on ${port} within ${timeoutMs} ms:\n${log()}`)
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** SIGUSR1 makes Mosquitto write `mosquitto.db` (via a temp file and a rename), so its appearance means done. */
async function saveDatabase(child: ChildProcess | undefined, file: string, timeoutMs = 3000) {
  if (!child) throw new Error('mosquitto is not running')
  rmSync(file, { force: true })
  child.kill('SIGUSR1')
  const deadline = Date.now() + timeoutMs
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error('mosquitto did not write its persistence file')
    await sleep(10)
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
