/**
 * Packaging checks that need no Docker daemon and no cluster:
 *  - the Dockerfile is parsed by dockerfile-ast and linted by dockerfile-utils;
 *  - its HEALTHCHECK command is really run (with this Bun) against a local server;
 *  - every YAML under deploy/ parses; every object the kustomization in deploy/k8s applies is
 *    checked against the Kubernetes API schemas (kubernetes-models, the model of its
 *    apiVersion/kind), and the split topology's properties are asserted: one workload per
 *    component with probes, resources, ADVERTISE_URL from the pod IP, a Service, an HPA; the
 *    Ingress routes; every variable set is a real setting and each pod's configuration loads;
 *    secrets come from the Secret only.
 */
import { test, expect, describe } from 'bun:test'
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { DockerfileParser, type Instruction } from 'dockerfile-ast'
import { validate as lintDockerfile } from 'dockerfile-utils'
import { parseAllDocuments } from 'yaml'
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1'
import { kernelSettings, loadKernelConfig, readSettings, type Spec } from '../kernel/config'
import { discover } from '../kernel/discovery'

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
const k8sDir = join(deployDir, 'k8s')
const yamlFiles = filesUnder(deployDir).filter((p) => /\.ya?ml$/.test(p))
const parsed = new Map(yamlFiles.map((p) => [relative(root, p), parseYaml(readFileSync(p, 'utf8'), relative(root, p))]))

/** What `kubectl apply -k deploy/k8s` applies: every document of every file the kustomization lists. */
const [kustomization] = parsed.get('deploy/k8s/kustomization.yaml')!
const applied: { file: string; obj: any }[] = (kustomization.resources as string[]).flatMap((file) =>
  parseYaml(readFileSync(join(k8sDir, file), 'utf8'), file).map((obj) => ({ file, obj })),
)
const [secretExample] = parsed.get('deploy/k8s/secret.example.yaml')!

const models: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/Ingress': Ingress,
}

const ofKind = (kind: string) => applied.filter((o) => o.obj.kind === kind).map((o) => o.obj)
const workloads = applied.filter((o) => o.obj.kind === 'Deployment' || o.obj.kind === 'StatefulSet').map((o) => o.obj)
const component = (obj: any): string => obj.metadata.labels['app.kubernetes.io/component']
const workload = (name: string) => workloads.find((w) => component(w) === name)
const containerOf = (w: any) => w.spec.template.spec.containers[0]
const envOf = (w: any): any[] => containerOf(w).env ?? []
const envValue = (w: any, name: string) => envOf(w).find((e) => e.name === name)
const selects = (selector: Record<string, string>, w: any) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v)

const [config] = ofKind('ConfigMap')
const discovered = await discover([join(root, 'plugins')])
const pluginSettings = Object.fromEntries(discovered.map(({ plugin }) => [plugin.name, (plugin.settings ?? {}) as Spec]))
const knownSettings = new Set([...Object.keys(kernelSettings), ...Object.values(pluginSettings).flatMap((s) => Object.keys(s))])
/** Names that must only ever come from the Secret. */
const SECRET_NAMES = ['JWT_SECRET', 'INTERNAL_SECRET', 'DATABASE_URL', 'REDIS_URL', 'MQTT_URL', 'ADMIN_PASSWORD']

/** The environment one pod of a workload starts with (the Secret as the example shapes it). */
function podEnv(w: any, podIP = '10.1.2.3', podName = `${w.metadata.name}-0`): Record<string, string> {
  const env: Record<string, string> = { ...config.data, ...secretExample.stringData }
  for (const e of envOf(w)) {
    if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') env[e.name] = podIP
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName
    else env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, n) => env[n] ?? `$(${n})`)
  }
  return env
}

describe('deploy/', () => {
  test('there are YAML files and every one parses', () => {
    expect(yamlFiles.map((p) => relative(root, p))).toEqual(
      expect.arrayContaining(['deploy/docker-compose.yml', 'deploy/k8s/kustomization.yaml', 'deploy/k8s/secret.example.yaml']),
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

  test('the kustomization lists every manifest under deploy/k8s except the Secret example, and no Secret', () => {
    expect(kustomization.kind).toBe('Kustomization')
    expect(kustomization.namespace).toBe('tessera')
    const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'secret.example.yaml').sort())
    expect(ofKind('Secret')).toEqual([]) // no placeholder secret is ever applied
    expect(kustomization.images.map((i: any) => i.name)).toContain('tessera')
    for (const w of workloads) expect(containerOf(w).image).toBe('tessera') // so the images entry rewrites it
  })

  test('every object (and the Secret example) is valid against the Kubernetes API schemas', () => {
    expect(applied.length).toBeGreaterThan(10)
    for (const { file, obj } of [...applied, { file: 'secret.example.yaml', obj: secretExample }]) {
      const kind = `${obj.apiVersion}/${obj.kind}`
      const Model = models[kind]
      expect({ file, kind, known: !!Model }).toEqual({ file, kind, known: true })
      let problem = ''
      try {
        new Model(obj).validate()
      } catch (e) {
        problem = (e as Error).message
      }
      expect({ file, name: obj.metadata?.name, problem }).toEqual({ file, name: obj.metadata?.name, problem: '' })
    }
  })

  test('the schema validation is live: it refuses a broken object', () => {
    const gateway = structuredClone(workload('gateway'))
    gateway.spec.template.spec.containers[0].readinessProbe.httpGet.port = { name: 'http' }
    expect(() => new Deployment(gateway).validate()).toThrow()
    expect(() => new HorizontalPodAutoscaler({ metadata: { name: 'x' }, spec: { maxReplicas: 'ten' } } as any).validate()).toThrow()
  })

  test('one workload per component: the gateway, one per plugin, and chat + live together as realtime', () => {
    const plugins = Object.fromEntries(workloads.map((w) => [component(w), envValue(w, 'PLUGINS')?.value]))
    expect(plugins).toEqual({
      gateway: 'gateway',
      auth: 'auth',
      inventory: 'inventory',
      realtime: 'chat,live',
      catalog: 'catalog',
      orders: 'orders',
      payments: 'payments',
    })
    // Every plugin of the image is hosted somewhere, and nothing else is named.
    const hosted = Object.values(plugins).flatMap((p) => p.split(',')).filter((p) => p !== 'gateway')
    expect(hosted.sort()).toEqual(discovered.map((d) => d.plugin.name).sort())
    for (const w of workloads) expect(w.metadata.name).toBe(`tessera-${component(w)}`)
  })

  test('every workload has the three health probes on the right paths and port', () => {
    for (const w of workloads) {
      const c = containerOf(w)
      const port = c.ports.find((p: any) => p.name === 'http')
      expect({ w: w.metadata.name, port: port?.containerPort }).toEqual({ w: w.metadata.name, port: Number(config.data.PORT) })
      const target = (probe: any) => probe?.httpGet && [probe.httpGet.path, probe.httpGet.port]
      expect(target(c.livenessProbe)).toEqual(['/health/live', 'http'])
      expect(target(c.readinessProbe)).toEqual(['/health/ready', 'http'])
      expect(target(c.startupProbe)).toEqual(['/health/startup', 'http'])
      // The start-up probe gives start-up (migrations, connections) its own, longer budget.
      expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(30)
    }
  })

  test('every workload runs as the Dockerfile user, unprivileged, with resources and a grace period above the drain', () => {
    const user = inFinal('USER').at(-1)!.getArgumentsContent()
    expect(user).toBe('bun:bun') // uid/gid 1000 in the oven/bun image
    for (const w of workloads) {
      const pod = w.spec.template.spec
      const c = containerOf(w)
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 })
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })
      expect(c.securityContext.capabilities.drop).toContain('ALL')
      // The read-only root needs the only places the app writes.
      expect(c.volumeMounts.map((m: any) => m.mountPath)).toEqual(expect.arrayContaining(['/app/data', '/tmp']))
      for (const kind of ['requests', 'limits']) {
        expect(c.resources[kind].cpu).toBeDefined()
        expect(c.resources[kind].memory).toBeDefined()
      }
      // preStop sleep, then the kernel drains for SHUTDOWN_TIMEOUT_MS (and exits within 10 s whatever).
      const [cmd, seconds] = c.lifecycle.preStop.exec.command
      expect(cmd).toBe('sleep')
      const drainSeconds = Math.max(Number(config.data.SHUTDOWN_TIMEOUT_MS) / 1000, 10)
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(Number(seconds) + drainSeconds)
      expect(w.spec.replicas).toBeUndefined() // the HPA owns the replica count
    }
  })

  test('ADVERTISE_URL is the pod IP (downward API) on the HTTP port', () => {
    for (const w of workloads) {
      const env = envOf(w)
      const ip = env.findIndex((e) => e.valueFrom?.fieldRef?.fieldPath === 'status.podIP')
      const advertise = env.findIndex((e) => e.name === 'ADVERTISE_URL')
      expect({ w: w.metadata.name, ip: ip >= 0, advertise: advertise > ip }).toEqual({ w: w.metadata.name, ip: true, advertise: true })
      // $(NAME) only expands a variable defined earlier in the list.
      expect(env[advertise].value).toBe(`http://$(${env[ip].name}):${config.data.PORT}`)
      expect(podEnv(w, '10.9.8.7').ADVERTISE_URL).toBe('http://10.9.8.7:3000')
    }
  })

  test('each workload has a Service selecting its pods and an autoscaling/v2 CPU HPA targeting it', () => {
    for (const w of workloads) {
      const service = ofKind('Service').find((s) => s.metadata.name === w.metadata.name)
      expect(service).toBeDefined()
      expect(selects(service.spec.selector, w)).toBe(true)
      expect(service.spec.ports.map((p: any) => p.targetPort)).toContain('http')
      // No other workload's pods behind it.
      for (const other of workloads.filter((o) => o !== w)) expect(selects(service.spec.selector, other)).toBe(false)
      const hpas = ofKind('HorizontalPodAutoscaler').filter((h) => h.spec.scaleTargetRef.name === w.metadata.name)
      expect(hpas.length).toBe(1)
      const [hpa] = hpas
      expect(hpa.apiVersion).toBe('autoscaling/v2')
      expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: w.kind, name: w.metadata.name })
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2)
      expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas)
      expect(hpa.spec.metrics).toContainEqual({ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: expect.any(Number) } } })
      // Utilization is relative to the CPU request, which therefore must exist (checked above).
    }
  })

  test('the gateway and inventory have a PodDisruptionBudget', () => {
    for (const name of ['gateway', 'inventory']) {
      const w = workload(name)
      const pdbs = ofKind('PodDisruptionBudget').filter((p) => selects(p.spec.selector.matchLabels, w))
      expect({ name, pdbs: pdbs.length }).toEqual({ name, pdbs: 1 })
    }
  })

  test('the Ingress sends / to the gateway and /socket.io/ to realtime with cookie affinity (ingress-nginx)', () => {
    const ingresses = ofKind('Ingress')
    const routes = ingresses.flatMap((ing) =>
      ing.spec.rules.flatMap((r: any) => r.http.paths.map((p: any) => ({ ing, path: p.path, pathType: p.pathType, backend: p.backend.service }))),
    )
    const to = (path: string) => routes.find((r) => r.path === path)
    expect(to('/')?.backend.name).toBe('tessera-gateway')
    expect(to('/socket.io/')?.backend.name).toBe('tessera-realtime')
    for (const r of routes) {
      expect(r.pathType).toBe('Prefix')
      const service = ofKind('Service').find((s) => s.metadata.name === r.backend.name)
      expect(service?.spec.ports.map((p: any) => p.name)).toContain(r.backend.port.name)
    }
    const socketAnnotations = to('/socket.io/')!.ing.metadata.annotations
    expect(socketAnnotations['nginx.ingress.kubernetes.io/affinity']).toBe('cookie')
    expect(socketAnnotations['nginx.ingress.kubernetes.io/session-cookie-name']).toBeDefined()
    // Annotations are per Ingress object in ingress-nginx: the gateway's routes get no affinity.
    expect(to('/')!.ing.metadata.annotations?.['nginx.ingress.kubernetes.io/affinity']).toBeUndefined()
  })

  test('inventory: stable MQTT sessions per replica (StatefulSet, MQTT_INSTANCE = pod name), never scaled down by the HPA', () => {
    const w = workload('inventory')
    expect(w.kind).toBe('StatefulSet')
    expect(ofKind('Service').map((s) => s.metadata.name)).toContain(w.spec.serviceName)
    expect(envValue(w, 'MQTT_INSTANCE')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name')
    const hpa = ofKind('HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.name === w.metadata.name)
    expect(hpa.spec.behavior.scaleDown.selectPolicy).toBe('Disabled')
    // The kernel makes the client ids from it: the same pod name gives the same sessions.
    expect(readSettings(kernelSettings, podEnv(w, '10.0.0.1', 'tessera-inventory-1')).MQTT_INSTANCE).toBe('tessera-inventory-1')
  })

  test('every variable the manifests set is a kernel or plugin setting, and each pod\'s configuration loads', () => {
    const helpers = new Set<string>() // downward-API values used only inside other values, like POD_IP
    const names: { where: string; name: string }[] = [
      ...Object.keys(config.data).map((name) => ({ where: 'config.yaml', name })),
      ...Object.keys(secretExample.stringData).map((name) => ({ where: 'secret.example.yaml', name })),
    ]
    for (const w of workloads)
      for (const e of envOf(w)) {
        const usedInside = envOf(w).some((o) => typeof o.value === 'string' && o.value.includes(`$(${e.name})`))
        if (e.valueFrom?.fieldRef && usedInside && !knownSettings.has(e.name)) helpers.add(e.name)
        else names.push({ where: w.metadata.name, name: e.name })
      }
    expect(names.filter((n) => !knownSettings.has(n.name))).toEqual([])
    expect([...helpers]).toEqual(['POD_IP'])
    for (const w of workloads) {
      const env = podEnv(w)
      const kernel = loadKernelConfig(env) // throws on any bad value or unsafe production setting
      expect(kernel).toMatchObject({ NODE_ENV: 'production', EVENT_BUS: 'redis-streams', REGISTRY: 'redis', PLUGIN_ROUTES: undefined })
      expect(kernel.REDIS_URL).toBeDefined()
      expect(kernel.MQTT_URL).toMatch(/^mqtts?:\/\/[^:@]+:[^@]+@/) // an external broker, with its account
      for (const plugin of kernel.PLUGINS.filter((p) => p !== 'gateway')) readSettings(pluginSettings[plugin], env)
    }
  })

  test('secrets are referenced from the Secret, never inlined', () => {
    for (const name of SECRET_NAMES) {
      expect(Object.keys(config.data)).not.toContain(name)
      expect(Object.keys(secretExample.stringData)).toContain(name)
    }
    for (const w of workloads) {
      const c = containerOf(w)
      for (const e of envOf(w)) expect({ w: w.metadata.name, name: e.name, inline: SECRET_NAMES.includes(e.name) }).toMatchObject({ inline: false })
      expect(c.envFrom).toContainEqual({ secretRef: { name: secretExample.metadata.name } })
      expect(c.envFrom).toContainEqual({ configMapRef: { name: config.metadata.name } })
    }
    // No credential-looking URL anywhere in what is applied.
    const text = (kustomization.resources as string[]).map((f) => readFileSync(join(k8sDir, f), 'utf8')).join('\n')
    expect(text).not.toMatch(/(postgres|redis|mqtts?):\/\/[^\s/]*@/)
  })
})
