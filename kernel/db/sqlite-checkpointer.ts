/**
 * A worker thread that moves SQLite's write-ahead log into the database file. Left to the writer
 * (wal_autocheckpoint), a checkpoint runs inside some transaction's COMMIT on the event loop, with
 * an fsync: tens of milliseconds during which nothing else is answered. Here it runs beside it.
 * PASSIVE never blocks the writer or readers; frames still in use are copied on a later round.
 */
import { Database } from 'bun:sqlite'

declare const self: Worker
const { path, intervalMs } = (await new Promise<MessageEvent>((resolve) => self.addEventListener('message', resolve, { once: true }))).data as {
  path: string
  intervalMs: number
}
const db = new Database(path, { readwrite: true, strict: true })
db.exec('PRAGMA busy_timeout = 5000;')
const checkpoint = db.query('PRAGMA wal_checkpoint(PASSIVE)')
const timer = setInterval(() => {
  try {
    checkpoint.run()
  } catch {
    // Busy or closing: the next round tries again.
  }
}, intervalMs)
self.addEventListener('message', () => {
  clearInterval(timer)
  db.close()
  self.postMessage('stopped')
})
self.postMessage('ready')
