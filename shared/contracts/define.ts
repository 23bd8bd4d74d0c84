import type { Static, TSchema } from '@sinclair/typebox'

/** A call one plugin offers others: `ctx.call('<plugin>.<action>', input)`. */
export interface ActionContract<I extends TSchema = TSchema, O extends TSchema = TSchema> {
  input: I
  output: O
  /** Safe to retry: calling twice has the effect of calling once. Only these are retried remotely. */
  idempotent: boolean
  /** One sentence of meaning. */
  doc: string
}

export const action = <I extends TSchema, O extends TSchema>(c: ActionContract<I, O>) => c

/** An event a plugin publishes: its payload schema and one sentence of meaning. */
export interface EventContract<P extends TSchema = TSchema> {
  payload: P
  doc: string
}

export const event = <P extends TSchema>(c: EventContract<P>) => c

export type InputOf<C> = C extends ActionContract<infer I, TSchema> ? Static<I> : never
export type OutputOf<C> = C extends ActionContract<TSchema, infer O> ? Static<O> : never
export type PayloadOf<C> = C extends EventContract<infer P> ? Static<P> : never
