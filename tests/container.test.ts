/**
 * Packaging checks that need no Docker daemon and no cluster:
 *  - the Dockerfile is parsed by dockerfile-ast and linted by dockerfile-utils;
 *  - its HEALTHCHECK command is really run (with this Bun) against a local server;
 *  - every YAML under deploy/ parses, Kubernetes objects are checked against the
 *    Kubernetes OpenAPI schemas (kubernetes-models), and the Deployments carry the
 *    probes, security context, resources and grace period the platform relies on.
 */
import { test, expect, describe } from 'bun:test'
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { DockerfileParser, type Instruction } from 'dockerfile-ast'
import { validate as lintDockerfile } from 'dockerfile-utils'
import { parseAllDocuments } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1'

const root = resolve(import.meta.dir, '..')
const read = (p: string) => readFileSync(join(root, p), 'utf8')

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

const dockerfileText = read('Dockerfile')
const dockerfile = DockerfileParser.parse(dockerfileText)
const froms = dockerfile.getFROMs()
const lastFrom = froms[froms.length - 1]
/** Instructions of the final (runtime) stage: everything after the last FROM. */
const finalStage: Instruction[] = dockerfile
  .getInstructions()
  .filter((i) => i.getRange().start.line > lastFrom.getRange().start.line)
const inFinal = (keyword: string) => finalStage.filter((i) => i.getKeyword() === keyword)
/** Exec-form (JSON array) arguments of an instruction such as CMD or HEALTHCHECK CMD. */
const execForm = (i: Instruction, prefix = ''): string[] => {
  const raw = (i.getRawArgumentsContent() ?? '').replace(/\\\r?\n/g, ' ')
  const at = raw.indexOf('[', raw.indexOf(prefix))
  return JSON.parse(raw.slice(at))
}

describe('Dockerfile', () => {
  test('the linter (dockerfile-utils) reports no errors or warnings', () => {
    const problems = lintDockerfile(dockerfileText).map(
      (d) => `line ${d.range.start.line + 1}: ${d.message} (severity ${d.severity})`,
    )
    expect(problems).toEqual([])
  })

  test('the linter is live: it flags a broken Dockerfile', () => {
    expect(lintDockerfile('FROM\nEXPOSE port\nCMD ["bun"\n').length).toBeGreaterThan(0)
  })

  test('is multi-stage and every stage, final one included, is the official Bun image on a pinned 1.x tag', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2)
    for (const from of froms) expect(from.getImageName()).toBe('oven/bun')
    const version = dockerfile
      .getInitialARGs()
      .map((a) => a.getProperty())
      .find((p) => p?.getName() === 'BUN_VERSION')
      ?.getValue()
    expect(version).toMatch(/^1\.\d+(\.\d+)?$/)
    expect(lastFrom.getImageTag()).toMatch(/^(\$\{BUN_VERSION\}|1\.[\d.]+)(-slim)?$/)
  })

  test('the pinned Bun matches the bun devDependency the tests run on', () => {
    const version = dockerfile
      .getInitialARGs()
      .map((a) => a.getProperty())
      .find((p) => p?.getName() === 'BUN_VERSION')
      ?.getValue()
    const lock = JSON.parse(read('package-lock.json'))
    expect(lock.packages['node_modules/bun']?.version).toBe(version)
  })

  test('production dependencies come from the committed lockfile', () => {
    const run = dockerfile
      .getInstructions()
      .filter((i) => i.getKeyword() === 'RUN')
      .map((i) => i.getRawArgumentsContent() ?? '')
    expect(run.some((r) => /bun install\b.*--frozen-lockfile/.test(r) && /--production/.test(r))).toBe(true)
    const copied = dockerfile.getCOPYs().map((c) => c.getRawArgumentsContent() ?? '')
    expect(copied.some((c) => c.includes('package-lock.json'))).toBe(true)
  })

  test('the final stage runs as a non-root user', () => {
    const users = inFinal('USER')
    expect(users.length).toBeGreaterThan(0)
    const user = (users[users.length - 1].getArgumentsContent() ?? '').split(':')[0]
    expect(user).not.toBe('')
    expect(['root', '0']).not.toContain(user)
    // USER comes before CMD, so the server itself is what runs unprivileged.
    const cmdLine = inFinal('CMD')[0].getRange().start.line
    expect(users[users.length - 1].getRange().start.line).toBeLessThan(cmdLine)
  })

  test('the final stage copies the application folders and makes /app/data for the app user', () => {
    const copies = inFinal('COPY').map((c) => c.getRawArgumentsContent() ?? '')
    for (const dir of ['kernel', 'plugins', 'shared', 'iot', 'scripts', 'node_modules'])
      expect(copies.some((c) => new RegExp(`\\./${dir}$`).test(c.trim()))).toBe(true)
    const runs = inFinal('RUN').map((r) => r.getRawArgumentsContent() ?? '')
    expect(runs.some((r) => r.includes('/app/data') && /chown\s+bun/.test(r))).toBe(true)
  })

  test('NODE_ENV=production, ports 3000 and 1883, CMD runs kernel/main.ts with bun', () => {
    const env = inFinal('ENV').flatMap((e) => (e as any).getProperties().map((p: any) => [p.getName(), p.getValue()]))
    expect(Object.fromEntries(env).NODE_ENV).toBe('production')
    const exposed = inFinal('EXPOSE').flatMap((e) => e.getArguments().map((a) => a.getValue()))
    expect(exposed).toEqual(expect.arrayContaining(['3000', '1883']))
    const cmds = inFinal('CMD')
    expect(cmds.length).toBe(1)
    expect(execForm(cmds[0])).toEqual(['bun', 'kernel/main.ts'])
  })

  test('HEALTHCHECK probes /health/live with bun (no curl in the slim image)', () => {
    const checks = inFinal('HEALTHCHECK')
    expect(checks.length).toBe(1)
    const command = execForm(checks[0], 'CMD')
    expect(command[0]).toBe('bun')
    expect(command.join(' ')).toContain('/health/live')
    expect(command.join(' ')).not.toMatch(/\b(curl|wget)\b/)
  })

  test('the HEALTHCHECK command really passes on 200 and fails on 503 or no server', async () => {
    const [, ...args] = execForm(inFinal('HEALTHCHECK')[0], 'CMD')
    let status = 200
    const seen: string[] = []
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch(req) {
        seen.push(new URL(req.url).pathname)
        return new Response('', { status })
      },
    })
    const probe = async (port: number) => {
      const proc = Bun.spawn([process.execPath, ...args], {
        env: { ...process.env, PORT: String(port) },
        stdout: 'ignore',
        stderr: 'ignore',
      })
      return proc.exited
    }
    try {
      expect(await probe(server.port!)).toBe(0)
      status = 503
      expect(await probe(server.port!)).not.toBe(0)
    } finally {
      server.stop(true)
    }
    expect(await probe(server.port!)).not.toBe(0)
    expect(seen).toEqual(['/health/live', '/health/live'])
  })

  test('.dockerignore keeps node_modules, data, .git and tests out but not the sources', () => {
    const rules = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    for (const ignored of ['node_modules', 'data', '.git', 'tests', '.env']) expect(rules).toContain(ignored)
    for (const kept of ['kernel', 'plugins', 'shared', 'iot', 'scripts', 'package.json', 'package-lock.json', 'bunfig.toml'])
      expect(rules).not.toContain(kept)
  })
})

// ---------------------------------------------------------------------------
// deploy/
// ---------------------------------------------------------------------------

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? filesUnder(p) : [p]
  })
}

function parseYaml(text: string, where: string): any[] {
  const docs = parseAllDocuments(text)
  const list = Array.isArray(docs) ? docs : [docs]
  const errors = list.flatMap((d: any) => d.errors ?? []).map((e: any) => `${where}: ${e.message}`)
  expect(errors).toEqual([])
  return list.map((d: any) => d.toJS()).filter((d) => d != null)
}

const deployDir = join(root, 'deploy')
const yamlFiles = filesUnder(deployDir).filter((p) => /\.ya?ml$/.test(p))
const parsed = new Map(yamlFiles.map((p) => [relative(root, p), parseYaml(readFileSync(p, 'utf8'), relative(root, p))]))

const template = read('deploy/k8s/plugin.yaml.tmpl')
const render = (plugin: string) => parseYaml(template.replaceAll('__PLUGIN__', plugin), `plugin.yaml.tmpl(${plugin})`)

/** Every Kubernetes object under deploy/k8s, plus the template rendered for a sample plugin. */
const k8sObjects: { file: string; obj: any }[] = [
  ...[...parsed]
    .filter(([file]) => file.startsWith('deploy/k8s/'))
    .flatMap(([file, docs]) => docs.map((obj) => ({ file, obj }))),
  ...render('example').map((obj) => ({ file: 'deploy/k8s/plugin.yaml.tmpl', obj })),
].filter(({ obj }) => obj.kind !== 'Kustomization')

const models: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
}

const deployments = k8sObjects.filter(({ obj }) => obj.kind === 'Deployment')

describe('deploy/', () => {
  test('there are YAML files and every one parses', () => {
    expect(yamlFiles.map((p) => relative(root, p))).toEqual(
      expect.arrayContaining(['deploy/docker-compose.yml', 'deploy/k8s/kustomization.yaml', 'deploy/k8s/plugin-auth.yaml']),
    )
    for (const [file, docs] of parsed) expect({ file, docs: docs.length > 0 }).toEqual({ file, docs: true })
  })

  test('docker-compose.yml: all-in-one Tessera with PostgreSQL, Redis and Mosquitto', () => {
    const [compose] = parsed.get('deploy/docker-compose.yml')!
    const s = compose.services
    expect(Object.keys(s).sort()).toEqual(['mosquitto', 'mosquitto-init', 'postgres', 'redis', 'tessera'])
    expect(s.tessera.build.context).toBe('..')
    expect(existsSync(join(deployDir, s.tessera.build.context, s.tessera.build.dockerfile))).toBe(true)
    const env = s.tessera.environment
    expect(env.PLUGINS).toBeUndefined() // all-in-one: every plugin
    expect(env.DATABASE_URL).toMatch(/^postgres:\/\/.+@postgres:5432\//)
    expect(env.REDIS_URL).toBe('redis://redis:6379')
    // Tessera's broker account provisions device credentials through Mosquitto's dynamic security.
    expect(env.MQTT_URL).toMatch(/^mqtt:\/\/tessera:.+@mosquitto:1883$/)
    expect(env.MQTT_PROVISIONING).toBe('mosquitto-dynsec')
    expect(env.JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?/) // must come from the operator, never a default
    expect(s.tessera.depends_on.postgres.condition).toBe('service_healthy')
    expect(s.tessera.depends_on.redis.condition).toBe('service_healthy')
    for (const v of s.mosquitto.volumes as string[]) {
      const [src] = v.split(':')
      if (src.startsWith('.')) expect(existsSync(join(deployDir, src))).toBe(true)
    }
  })

  test('Kubernetes objects are valid against the Kubernetes API schemas', () => {
    expect(k8sObjects.length).toBeGreaterThan(0)
    for (const { file, obj } of k8sObjects) {
      const Model = models[`${obj.apiVersion}/${obj.kind}`]
      expect({ file, kind: `${obj.apiVersion}/${obj.kind}`, known: !!Model }).toEqual({
        file,
        kind: `${obj.apiVersion}/${obj.kind}`,
        known: true,
      })
      expect(() => new Model(obj).validate()).not.toThrow()
    }
  })

  test('every Deployment has the three health probes on the right paths', () => {
    expect(deployments.length).toBeGreaterThanOrEqual(2) // auth + the rendered template
    for (const { obj } of deployments) {
      const [c] = obj.spec.template.spec.containers
      const port = c.ports.find((p: any) => p.containerPort === 3000)
      expect(port).toBeDefined()
      const targets = (probe: any) => probe?.httpGet && [probe.httpGet.path, probe.httpGet.port]
      expect(targets(c.livenessProbe)).toEqual(['/health/live', port.name ?? 3000])
      expect(targets(c.readinessProbe)).toEqual(['/health/ready', port.name ?? 3000])
      expect(targets(c.startupProbe)).toEqual(['/health/startup', port.name ?? 3000])
    }
  })

  test('every Deployment runs non-root, unprivileged, with resources and a long enough grace period', () => {
    for (const { obj } of deployments) {
      const pod = obj.spec.template.spec
      const [c] = pod.containers
      const sc = { ...pod.securityContext, ...c.securityContext }
      expect(sc.runAsNonRoot).toBe(true)
      expect(sc.runAsUser).toBeGreaterThan(0)
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false)
      expect(c.securityContext.capabilities.drop).toContain('ALL')
      if (c.securityContext.readOnlyRootFilesystem)
        expect(c.volumeMounts.map((m: any) => m.mountPath)).toEqual(expect.arrayContaining(['/app/data', '/tmp']))
      for (const kind of ['requests', 'limits']) {
        expect(c.resources[kind].cpu).toBeDefined()
        expect(c.resources[kind].memory).toBeDefined()
      }
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(10)
    }
  })

  test('each plugin Deployment hosts only its plugin and has a Service and an HPA', () => {
    for (const { file, obj } of deployments) {
      const plugin = obj.metadata.labels['app.kubernetes.io/component']
      const [c] = obj.spec.template.spec.containers
      expect(c.env.find((e: any) => e.name === 'PLUGINS')?.value).toBe(plugin)
      const siblings = k8sObjects.filter((o) => o.file === file).map((o) => o.obj)
      const service = siblings.find((o) => o.kind === 'Service' && o.metadata.name === obj.metadata.name)
      expect(service).toBeDefined()
      for (const [k, v] of Object.entries(service.spec.selector)) expect(obj.spec.template.metadata.labels[k]).toBe(v)
      const hpa = siblings.find((o) => o.kind === 'HorizontalPodAutoscaler')
      expect(hpa?.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: obj.metadata.name })
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2)
      expect(obj.spec.replicas).toBeUndefined() // the HPA owns the replica count
    }
  })

  test('env comes from a ConfigMap and a Secret; JWT_SECRET only in the Secret', () => {
    const configMaps = k8sObjects.filter((o) => o.obj.kind === 'ConfigMap').map((o) => o.obj)
    const secrets = k8sObjects.filter((o) => o.obj.kind === 'Secret').map((o) => o.obj)
    for (const cm of configMaps) expect(Object.keys(cm.data)).not.toContain('JWT_SECRET')
    for (const { obj } of deployments) {
      const [c] = obj.spec.template.spec.containers
      expect(c.env.map((e: any) => e.name)).not.toContain('JWT_SECRET')
      const cmName = c.envFrom.find((e: any) => e.configMapRef)?.configMapRef.name
      const secretName = c.envFrom.find((e: any) => e.secretRef)?.secretRef.name
      expect(configMaps.find((cm) => cm.metadata.name === cmName)?.data.NODE_ENV).toBe('production')
      const secret = secrets.find((s) => s.metadata.name === secretName)
      expect(Object.keys(secret?.stringData ?? secret?.data ?? {})).toContain('JWT_SECRET')
    }
  })

  test('plugin-auth.yaml is the template rendered for auth, and the kustomization lists it', () => {
    expect(parsed.get('deploy/k8s/plugin-auth.yaml')).toEqual(render('auth'))
    const [kustomization] = parsed.get('deploy/k8s/kustomization.yaml')!
    const pluginFiles = readdirSync(join(deployDir, 'k8s')).filter((f) => /^plugin-.+\.ya?ml$/.test(f))
    expect(kustomization.resources).toEqual(expect.arrayContaining(['config.yaml', ...pluginFiles]))
    expect(kustomization.resources).not.toContain('secret.example.yaml') // no placeholder secret is applied
    for (const r of kustomization.resources) expect(existsSync(join(deployDir, 'k8s', r))).toBe(true)
  })
})
