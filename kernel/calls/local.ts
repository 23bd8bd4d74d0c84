import { NotFound } from '../../shared/errors'
import type { ActionHandler, CallTransport } from './port'

/** Direct function calls to the actions of the plugins hosted in this process. */
export class LocalTransport implements CallTransport {
  private readonly handlers = new Map<string, ActionHandler>()

  register(action: string, handler: ActionHandler) {
    if (this.handlers.has(action)) throw new Error(`action ${action} is provided twice`)
    this.handlers.set(action, handler)
  }

  reaches(action: string) {
    return this.handlers.has(action)
  }

  invoke(action: string, input: unknown, meta: Parameters<ActionHandler>[1]) {
    const handler = this.handlers.get(action)
    if (!handler) throw new NotFound(`no plugin here provides ${action}`)
    return handler(input, meta)
  }
}
