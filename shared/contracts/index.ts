/**
 * Everything plugins may know about each other: the calls they offer and the events they publish.
 * A plugin imports these types, never another plugin's files.
 */
import { authActions, authEvents } from './auth'
import { catalogActions, catalogEvents } from './catalog'
import { chatEvents } from './chat'
import { inventoryActions, inventoryEvents } from './inventory'
import { ordersEvents } from './orders'
import { paymentsActions, paymentsEvents } from './payments'
import type { InputOf, OutputOf, PayloadOf } from './define'

export const actions = { ...authActions, ...inventoryActions, ...catalogActions, ...paymentsActions }
export const events = { ...authEvents, ...inventoryEvents, ...chatEvents, ...catalogEvents, ...ordersEvents, ...paymentsEvents }

export type Actions = typeof actions
export type ActionName = keyof Actions
export type ActionInput<N extends ActionName> = InputOf<Actions[N]>
export type ActionOutput<N extends ActionName> = OutputOf<Actions[N]>

export type Events = typeof events
export type EventType = keyof Events
export type EventPayload<E extends EventType> = PayloadOf<Events[E]>

export * from './define'
export * as auth from './auth'
export * as catalog from './catalog'
export * as chat from './chat'
export * as inventory from './inventory'
export * as orders from './orders'
export * as payments from './payments'
