/**
 * A real Mosquitto for tests, started from the product's own configuration
 * (deploy/mosquitto/mosquitto.conf) with only the machine-specific lines replaced: listener,
 * plugin path, data directory. Its admin account is what Tessera uses to provision devices.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './harness'
import { freePort } from '../scripts/free-port'

const MOSQUITTO = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto'
const DYNSEC_PLUGIN = process.env.MOSQUITTO_DYNSEC ?? '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so'
export const BROKER_ADMIN = { username: 'tessera', password: 'tessera-broker-admin' }


export interface TestBroker {
  url: string
  /** MQTT_URL for Tessera: with the admin account. */
  adminUrl: string
  port: number
  stop(): Promise<void>
}

export async function startMosquitto(): Promise<TestBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-mosquitto-'))
  // Started as root, Mosquitto drops to its own user, which must read and write here.
  chmodSync(dir, 0o777)
  const port = await freePort()
  const init = Bun.spawnSync(['mosquitto_ctrl', 'dynsec', 'init', join(dir, 'dynamic-security.json'), BROKER_ADMIN.username, BROKER_ADMIN.password])
  if (init.exitCode !== 0) throw new Error(`mosquitto_ctrl dynsec init failed: ${init.stderr.toString()}`)
  const config = readFileSync(join(ROOT, 'deploy/mosquitto/mosquitto.conf'), 'utf8')
    .replace(/^listener .*$/m, `listener ${port} 127.0.0.1`)
    .replace(/^plugin .*$/m, `plugin ${DYNSEC_PLUGIN}`)
    .replace(/^plugin_opt_config_file .*$/m, `plugin_opt_config_file ${join(dir, 'dynamic-security.json')}`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`)
    .replace(/^log_dest .*$/m, `log_dest file ${join(dir, 'mosquitto.log')}`)
  writeFileSync(join(dir, 'mosquitto.conf'), config)
  for (const f of ['dynamic-security.json', 'mosquitto.conf']) chmodSync(join(dir, f), 0o666)
  const proc = Bun.spawn([MOSQUITTO, '-c', join(dir, 'mosquitto.conf')], { stdout: 'ignore', stderr: 'pipe' })
  const deadline = Date.now() + 5000
  for (;;) {
    const up = await Bun.connect({ hostname: '127.0.0.1', port, socket: { data() {} } }).then(
      (s) => (s.end(), true),
      () => false,
    )
    if (up) break
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`mosquitto did not start: ${await new Response(proc.stderr).text()}`)
    await Bun.sleep(25)
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    adminUrl: `mqtt://${BROKER_ADMIN.username}:${BROKER_ADMIN.password}@127.0.0.1:${port}`,
    async stop() {
      proc.kill('SIGTERM')
      await proc.exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
