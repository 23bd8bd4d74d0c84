/**
 * Merging OpenAPI documents: the gateway's own document, plus from each live plugin's owner only
 * what belongs to that plugin (paths under `/api/v1/<plugin>/`, its tag, the components they use).
 */

export interface OpenApiDocument {
  openapi?: string
  info?: Record<string, unknown>
  tags?: { name: string; description?: string }[]
  paths?: Record<string, unknown>
  components?: Record<string, Record<string, unknown> | undefined>
  [key: string]: unknown
}

export function mergeDocuments(base: OpenApiDocument, parts: { plugin: string; doc: OpenApiDocument }[]): OpenApiDocument {
  const merged: OpenApiDocument = {
    ...base,
    info: { ...base.info, description: 'Every route of the plugins live in this deployment, merged by the gateway.' },
    tags: [...(base.tags ?? [])],
    paths: { ...base.paths },
    components: { ...base.components },
  }
  const tags = merged.tags!
  for (const { plugin, doc } of parts) {
    const prefix = `/api/v1/${plugin}`
    for (const [path, item] of Object.entries(doc.paths ?? {}))
      if (path === prefix || path.startsWith(`${prefix}/`)) merged.paths![path] = item
    const tag = doc.tags?.find((t) => t.name === plugin) ?? { name: plugin, description: plugin }
    const at = tags.findIndex((t) => t.name === plugin)
    if (at >= 0) tags[at] = tag
    else tags.push(tag)
    // Components are shared by name (the same kernel declares the security scheme everywhere).
    for (const [kind, entries] of Object.entries(doc.components ?? {}))
      merged.components![kind] = { ...entries, ...merged.components![kind] }
  }
  return merged
}
