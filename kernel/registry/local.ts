import { type Instance, type Registry, readyOwners } from './port'

/** All-in-one: the only owner of anything is this process. */
export class LocalRegistry implements Registry {
  private self: Instance | undefined

  owners(plugin: string) {
    return readyOwners(this.instances(), plugin)
  }

  instances() {
    return this.self ? [this.self] : []
  }

  async join(self: Instance) {
    this.self = { ...self }
  }

  async setReady(ready: boolean) {
    if (this.self) this.self.ready = ready
  }

  async withdraw() {
    this.self = undefined
  }

  async close() {}
}
