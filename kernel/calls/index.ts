/**
 * The call port as plugins see it: typed by shared/contracts, input checked against the contract,
 * bounded by a deadline (cockatiel), and routed to the first transport that reaches the action:
 * the local one for plugins hosted here, else the HTTP transport to an owner from the registry.
 */
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { TimeoutStrategy, timeout, TaskCancelledError } from 'cockatiel'
import { actions, type ActionInput, type ActionName, type ActionOutput } from '../../shared/contracts'
import { Invalid, Unavailable } from '../../shared/errors'
import { callScope, childTraceparent } from './context'
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

/** Throws Invalid unless `name` is a contract action and `input` matches its input schema. */
export function checkInput(name: string, input: unknown): asserts name is ActionName {
  if (!(name in actions)) throw new Invalid(`unknown action ${name}`)
  const check = checkerFor(name as ActionName)
  if (!check.Check(input)) {
    const details = [...check.Errors(input)].slice(0, 10).map((e) => ({ path: e.path, message: e.message }))
    throw new Invalid(`invalid input for ${name}`, details)
  }
}

export function callerFor(caller: string, transports: CallTransport[], defaultTimeoutMs = DEFAULT_TIMEOUT_MS): Call {
  return async (name, input, options = {}) => {
    checkInput(name, input)
    const transport = transports.find((t) => t.reaches(name))
    if (!transport) throw new Unavailable(`no live process provides ${name}`)
    // A call made while serving a request or another call keeps its trace and its deadline.
    const scope = callScope.getStore()
    const now = Date.now()
    const deadline = Math.min(now + (options.timeoutMs ?? defaultTimeoutMs), scope?.deadline ?? Infinity)
    const ms = deadline - now
    if (ms <= 0) throw new Unavailable(`no time left to call ${name}`, 'CALL_TIMEOUT')
    const meta: CallMeta = { caller, deadline, idempotencyKey: options.idempotencyKey, traceparent: childTraceparent(options.traceparent ?? scope?.traceparent) }
    try {
      return (await timeout(ms, TimeoutStrategy.Aggressive).execute(({ signal }) => transport.invoke(name, input, { ...meta, signal }))) as ActionOutput<typeof name>
    } catch (error) {
      if (error instanceof TaskCancelledError) throw new Unavailable(`${name} did not answer within ${ms} ms`, 'CALL_TIMEOUT')
      throw error
    }
  }
}
