/** What the auth plugin announces. It handles no events of others. */
import type { PluginContext } from '../../kernel/plugin'
import type { Role } from '../../shared/contracts/auth'

type Publish = PluginContext['events']['publish']

export const announce = (publish: Publish) => ({
  registered: (user: { id: string; email: string; name: string }) =>
    publish('auth.user.registered', { userId: user.id, email: user.email, name: user.name }),
  changed: (user: { id: string; roles: Role[]; disabled: boolean }) =>
    publish('auth.user.changed', { userId: user.id, roles: user.roles, disabled: user.disabled }),
})
