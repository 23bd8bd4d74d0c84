import type { Subprocess } from 'bun'

export const isRunning = (proc: Subprocess) => proc.exitCode === null && proc.signalCode === null

/** SIGTERM first so the child can shut down cleanly, SIGKILL if it is still there after `graceMs`. */
export async function stopChild(proc: Subprocess, graceMs: number): Promise<void> {
  if (!isRunning(proc)) return
  proc.kill('SIGTERM')
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)])
  if (!exited) {
    proc.kill('SIGKILL')
    await proc.exited
  }
}
