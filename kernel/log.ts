import pino, { type Logger } from 'pino'

/** Structured JSON logs on stdout; plugins get a child logger carrying their name. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'tessera', pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime })
}

export type { Logger }
