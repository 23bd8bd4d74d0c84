/**
 * What a call inherits from the work that makes it: the W3C trace context (traceparent) and the
 * deadline. An incoming request or remote call sets the scope; ctx.call inside it reads it, so
 * nested calls keep the trace and never outlive their caller's deadline.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

export interface CallScope {
  traceparent?: string
  /** Absolute deadline (epoch ms) of the work in progress. */
  deadline?: number
}

export const callScope = new AsyncLocalStorage<CallScope>()

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const hex = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex')

/** The header if it is a valid version-00 traceparent (all-zero ids are invalid), else undefined. */
export function validTraceparent(header: string | null | undefined): string | undefined {
  const m = header ? TRACEPARENT.exec(header.trim().toLowerCase()) : null
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]) || /^0+$/.test(m[3])) return undefined
  return m[0]
}

/** The traceparent of a new span: the same trace as `parent` (or a new trace), a fresh span id. */
export function childTraceparent(parent: string | undefined): string {
  const valid = validTraceparent(parent)
  return valid ? `00-${valid.slice(3, 35)}-${hex(8)}-${valid.slice(53, 55)}` : `00-${hex(16)}-${hex(8)}-01`
}
