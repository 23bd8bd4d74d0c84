/**
 * The call port as plugins see it: typed by shared/contracts, input checked against the contract,
 * bounded by a deadline (cockatiel), and routed to the first transport that reaches the action.
 */
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { TimeoutStrategy, timeout, TaskCancelledError } from 'cockatiel'
import { actions, type ActionInput, type ActionName, type ActionOutput } from '../../shared/contracts'
import { Invalid, Unavailable } from '../../shared/errors'
import type { CallMeta, CallTransport } from './port'

export interface CallOptions {
  timeoutMs?: number
  idempotencyKey?: string
  traceparent?: string
}

export type Call = <N extends ActionName>(name: N, input: ActionInput<N>, options?: CallOptions) => Promise<ActionOutput<N>>

const DEFAULT_TIMEOUT_MS = 5_000
const checks = new Map<string, TypeCheck<any>>()
const checkerFor = (name: ActionName) => {
  let check = checks.get(name)
  if (!check) checks.set(name, (check = TypeCompiler.Compile(actions[name].input)))
  return check
}

export function callerFor(caller: string, transports: CallTransport[]): Call {
  return async (name, input, options = {}) => {
    if (!(name in actions)) throw new Invalid(`unknown action ${String(name)}`)
    const check = checkerFor(name)
    if (!check.Check(input)) {
      const details = [...check.Errors(input)].slice(0, 10).map((e) => ({ path: e.path, message: e.message }))
      throw new Invalid(`invalid input for ${name}`, details)
    }
    const transport = transports.find((t) => t.reaches(name))
    if (!transport) throw new Unavailable(`no live process provides ${name}`)
    const ms = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const meta: CallMeta = { caller, deadline: Date.now() + ms, idempotencyKey: options.idempotencyKey, traceparent: options.traceparent }
    try {
      return (await timeout(ms, TimeoutStrategy.Aggressive).execute(() => transport.invoke(name, input, meta))) as ActionOutput<typeof name>
    } catch (error) {
      if (error instanceof TaskCancelledError) throw new Unavailable(`${name} did not answer within ${ms} ms`, 'CALL_TIMEOUT')
      throw error
    }
  }
}
