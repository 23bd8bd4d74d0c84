/**
 * `npm run migrations:generate`: writes drizzle-kit migrations for the kernel's tables and every
 * plugin's `schema.ts`, once per dialect, from the one table definition. Commit what it writes;
 * the kernel applies it at start. `--check` fails when a schema changed without a migration.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'

const root = resolve(import.meta.dir, '..')
const check = process.argv.includes('--check')

const owners = [
  { name: 'kernel', schemaFile: join(root, 'kernel/events/schema.ts'), out: join(root, 'kernel/migrations') },
  // The fixtures are plugins too: tests run them through the same migrations path.
  ...['plugins', 'tests/fixtures/plugins'].flatMap((dir) =>
    readdirSync(join(root, dir))
      .filter((p) => existsSync(join(root, dir, p, 'schema.ts')))
      .map((p) => ({ name: p, schemaFile: join(root, dir, p, 'schema.ts'), out: join(root, dir, p, 'migrations') })),
  ),
]

const work = mkdtempSync(join(tmpdir(), 'tessera-migrations-'))
let stale = false
try {
  for (const owner of owners) {
    for (const dialect of ['sqlite', 'postgres'] as const) {
      const entry = join(work, `${owner.name}-${dialect}.ts`)
      writeFileSync(
        entry,
        `import { materialize } from ${JSON.stringify(join(root, 'kernel/db/schema.ts'))}\n` +
          `import { schema } from ${JSON.stringify(owner.schemaFile)}\n` +
          `const tables = materialize(schema, '${dialect}')\n` +
          Object.keys(await import(owner.schemaFile).then((m) => m.schema))
            .map((k) => `export const ${k} = tables.${k}\n`)
            .join(''),
      )
      const out = join(owner.out, dialect)
      const before = existsSync(out) ? readdirSync(out).length : 0
      // Relative: drizzle-kit reads existing snapshots from './' + out, which breaks an absolute path.
      const args = ['generate', '--dialect', dialect === 'postgres' ? 'postgresql' : 'sqlite', '--schema', entry, '--out', relative(root, out)]
      const proc = Bun.spawnSync([join(root, 'node_modules/.bin/drizzle-kit'), ...args], { cwd: root, stdout: 'pipe', stderr: 'pipe' })
      const text = proc.stdout.toString() + proc.stderr.toString()
      if (proc.exitCode !== 0) {
        console.error(text)
        throw new Error(`drizzle-kit failed for ${owner.name} (${dialect})`)
      }
      if (!readdirSync(out).some((f) => f.endsWith('.sql'))) throw new Error(`drizzle-kit wrote no SQL for ${owner.name} (${dialect}):\n${text}`)
      const after = readdirSync(out).length
      if (after !== before) {
        stale = true
        console.log(`${owner.name} (${dialect}): new migration written to ${out}`)
      } else console.log(`${owner.name} (${dialect}): up to date`)
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}
if (check && stale) {
  console.error('schemas changed without committed migrations: run `npm run migrations:generate` and commit the result')
  process.exit(1)
}
