import { AsyncLocalStorage } from 'node:async_hooks'
import type { Db } from './port'

interface Scope {
  tx: Db
  afterCommit: (() => void)[]
}

/** Tracks the transaction of the current async flow, so nested calls join it. */
export class TransactionScope {
  private readonly als = new AsyncLocalStorage<Scope>()

  current(): Scope | undefined {
    return this.als.getStore()
  }

  /** Runs `body` as transaction `tx`, collecting its after-commit hooks into `hooks`. */
  within<T>(tx: Db, hooks: (() => void)[], body: (tx: Db) => Promise<T>): Promise<T> {
    return this.als.run({ tx, afterCommit: hooks }, () => body(tx))
  }

  afterCommit(fn: () => void) {
    const scope = this.current()
    if (scope) scope.afterCommit.push(fn)
    else fn()
  }
}

export const runHooks = (hooks: (() => void)[]) => {
  for (const hook of hooks) hook()
}
