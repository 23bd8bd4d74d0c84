/**
 * A worker thread that copies SQLite's write-ahead log into the database file. Left to the writer
 * (wal_autocheckpoint), a checkpoint runs inside some transaction's COMMIT, on the event loop, with
 * an fsync: tens of milliseconds during which nothing else is answered. Here it runs beside it.
 * PASSIVE never blocks the writer or readers: every `intervalMs`, and when asked (`copy`), which
 * the writer does while it goes on and then once while it holds its lock between transactions, so
 * that the copy completes and the log starts over instead of growing for as long as writes keep
 * coming. It keeps the writer informed in shared memory, which the writer reads after every
 * transaction without waiting for a message: how many frames the log holds (so it knows when to
 * ask), and how many of the copies asked for are done, the last one in how many milliseconds.
 */
import { Database } from 'bun:sqlite'
import { closeSync, fsyncSync, openSync } from 'node:fs'
import { COPIED, COPY_MS, type CheckpointerMessage, FRAMES } from './sqlite-checkpoint-protocol'

declare const self: Worker
let db: Database | undefined
/**
 * The database file, for fsync. SQLite syncs it only when a copy completes the log, so every page
 * the copies before wrote waited in the page cache for that one, held, fsync: 150 ms and more on
 * this disk (strace). Synced after each copy instead, on this thread, while the writer goes on.
 * Closed only once every connection of this process to the file is: closing a descriptor drops
 * the process's POSIX locks on the file, SQLite's included.
 */
let file: number | undefined
let copied = 0
let timer: ReturnType<typeof setInterval> | undefined
let intervalMs = 1000
let shared: Int32Array<ArrayBufferLike> = new Int32Array(3)

const passive = () => {
  try {
    const result = db?.query('PRAGMA wal_checkpoint(PASSIVE)').get() as { log: number; checkpointed: number } | null
    if (!result) return
    Atomics.store(shared, FRAMES, result.log)
    // `checkpointed` counts the frames copied since the log started over: a change is a copy.
    if (result.checkpointed !== copied && file !== undefined) fsyncSync(file)
    copied = result.checkpointed
  } catch {
    // Busy or closing: the next round tries again.
  }
}

self.addEventListener('message', (event: MessageEvent) => {
  const message = event.data as CheckpointerMessage
  if (message.type === 'open') {
    db = new Database(message.path, { readwrite: true, strict: true })
    db.exec('PRAGMA busy_timeout = 5000;')
    try {
      file = openSync(message.path, 'r')
    } catch {
      // Copies go on without it; SQLite still syncs the file when a copy completes the log.
    }
    intervalMs = message.intervalMs
    shared = message.shared
    timer = setInterval(passive, intervalMs)
  } else if (message.type === 'copy') {
    // The writer waits for the copies it asks for: the periodic one starts over, so as not to run just before the next of them.
    clearInterval(timer)
    const started = performance.now()
    passive()
    Atomics.store(shared, COPY_MS, Math.ceil(performance.now() - started))
    Atomics.add(shared, COPIED, 1)
    self.postMessage('copied')
    timer = setInterval(passive, intervalMs)
  } else {
    clearInterval(timer)
    db?.close()
    if (file !== undefined) closeSync(file)
    self.postMessage('stopped')
  }
})
