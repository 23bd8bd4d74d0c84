/**
 * What the writer (sqlite.ts) and its checkpointer thread (sqlite-checkpointer.ts) share: the
 * messages, and the indexes of the counters in shared memory. Kept apart from the checkpointer's
 * module, whose top level listens for messages: imported on the main thread, that listener kept
 * every process that loaded the database adapter alive (a script such as env-example.ts never ended).
 */

/** Indexes into the shared Int32Array: frames in the log after the last copy, copies done, the last copy's ms. */
export const FRAMES = 0
export const COPIED = 1
export const COPY_MS = 2

export type CheckpointerMessage = { type: 'open'; path: string; intervalMs: number; shared: Int32Array } | { type: 'copy' } | { type: 'stop' }
