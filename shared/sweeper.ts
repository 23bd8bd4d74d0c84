/**
 * A job that many triggers may ask for, run one at a time: a request while it runs causes exactly
 * one more run afterwards (so nothing asked for is missed, and bursts of requests coalesce).
 */
export class Sweeper {
  private running: Promise<void> | undefined
  private again = false
  private stopped = false

  constructor(
    private readonly run: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Asks for a run. */
  nudge() {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.run()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined
        if (this.again) {
          this.again = false
          this.nudge()
        }
      })
  }

  /** No more runs; resolves when the current one (if any) has finished. */
  async stop() {
    this.stopped = true
    await this.running
  }
}
