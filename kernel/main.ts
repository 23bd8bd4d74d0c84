/** `npm start`: one process hosting the plugins that PLUGINS names (all by default). */
import { ConfigError } from './config'
import { DiscoveryError } from './discovery'
import { Kernel } from './kernel'

try {
  const kernel = await Kernel.start()
  const shutdown = (signal: string) => {
    kernel.log.info({ signal }, 'shutting down')
    // The watchdog: whatever hangs, the process is gone within 10 s.
    setTimeout(() => {
      kernel.log.error('shutdown took too long; exiting')
      process.exit(1)
    }, 9_500).unref()
    kernel.stop().then(
      () => process.exit(0),
      (error) => {
        kernel.log.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  const launcher = kernel.config.LAUNCHER_PID
  if (launcher) {
    // A launcher killed outright (SIGKILL) cannot stop its children; they notice they were reparented.
    const watch = setInterval(() => {
      if (process.ppid === launcher) return
      clearInterval(watch)
      shutdown('launcher gone')
    }, 1_000)
    watch.unref()
  }
} catch (error) {
  if (error instanceof ConfigError || error instanceof DiscoveryError) {
    console.error(`tessera: ${error.message}`)
  } else {
    console.error('tessera: start-up failed', error)
  }
  process.exit(1)
}
