/**
 * A worker thread that copies SQLite's write-ahead log into the database file. Left to the writer
 * (wal_autocheckpoint), a checkpoint runs inside some transaction's COMMIT, on the event loop, with
 * an fsync: tens of milliseconds during which nothing else is answered. Here it runs beside it.
 * PASSIVE never blocks the writer or readers: every `intervalMs`, and when asked (`copy`), which
 * the writer does while it holds its lock between transactions, so that the copy completes and
 * the log starts over instead of growing for as long as writes keep coming.
 */
import { Database } from 'bun:sqlite'

declare const self: Worker
let db: Database | undefined
let timer: ReturnType<typeof setInterval> | undefined

const passive = () => {
  try {
    db?.query('PRAGMA wal_checkpoint(PASSIVE)').run()
  } catch {
    // Busy or closing: the next round tries again.
  }
}

self.addEventListener('message', (event: MessageEvent) => {
  const message = event.data as { type: 'open'; path: string; intervalMs: number } | { type: 'copy' } | { type: 'stop' }
  if (message.type === 'open') {
    db = new Database(message.path, { readwrite: true, strict: true })
    db.exec('PRAGMA busy_timeout = 5000;')
    timer = setInterval(passive, message.intervalMs)
  } else if (message.type === 'copy') {
    passive()
    self.postMessage('copied')
  } else {
    clearInterval(timer)
    db?.close()
    self.postMessage('stopped')
  }
})
