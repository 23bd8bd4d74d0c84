/**
 * The registry: which process hosts which plugin, at what internal URL, and whether it serves now.
 * Remote calls (and the gateway) ask it for the owners of a plugin; each process announces itself
 * while it runs and withdraws before it drains. Reads are synchronous, from a view the adapter keeps
 * fresh in the background, so finding an owner never waits on I/O.
 */

/** One running process (a replica) as the registry knows it. */
export interface Instance {
  /** Unique per process start. */
  id: string
  /** Base URL other Tessera processes reach it at, e.g. http://10.0.3.7:3000. */
  url: string
  /** The plugins it hosts. */
  plugins: string[]
  /** Serving: started, and not shutting down. */
  ready: boolean
}

export interface Registry {
  /** Base URLs of the ready instances hosting `plugin`, always listed the same way (no I/O). */
  owners(plugin: string): string[]
  /** The current view of every known instance, this one included. */
  instances(): Instance[]
  /** Makes this process known (not ready yet) and starts keeping the view fresh. */
  join(self: Instance): Promise<void>
  /** Says whether this process serves now. */
  setReady(ready: boolean): Promise<void>
  /** Others stop sending work here; the view stays readable for in-flight work. */
  withdraw(): Promise<void>
  /** Stops the background work and closes connections. */
  close(): Promise<void>
}

/** The ready instances of `view` hosting `plugin`, by URL (several instances may share none). */
export const readyOwners = (view: Instance[], plugin: string): string[] =>
  [...new Set(view.filter((i) => i.ready && i.plugins.includes(plugin)).map((i) => i.url))].sort()
