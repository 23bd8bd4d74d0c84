# Tessera: one image for every topology.
#   all-in-one:  docker run -p 3000:3000 tessera                 (every plugin in one process)
#   one plugin:  docker run -e PLUGINS=auth tessera               (one plugin per process/pod)
#   gateway:     docker run -e PLUGINS=gateway tessera
#
# The Bun tag tracks the `bun` devDependency in package.json, so the image runs the
# same runtime the test suite runs on. Bump both together.
ARG BUN_VERSION=1.4.5

# ---------------------------------------------------------------------------
# Stage 1: production dependencies.
# The project is installed with npm, so its lockfile is package-lock.json (there is
# no bun.lock). `bun install` migrates a package-lock.json (v2/v3) in memory when no
# bun.lock exists, and with --frozen-lockfile it refuses to build if package.json
# and package-lock.json disagree, so the image gets exactly the versions npm locked.
# (Checked with bun 1.4.5: adding a dependency to package.json without updating the
# lockfile fails with "lockfile had changes, but lockfile is frozen".)
# Bun does not run dependency lifecycle scripts unless they are trusted, and no
# production dependency needs one.
# ---------------------------------------------------------------------------
FROM oven/bun:${BUN_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json bunfig.toml ./
RUN bun install --frozen-lockfile --production

# ---------------------------------------------------------------------------
# Stage 2: application sources (.dockerignore keeps tests, data, .git, etc. out).
# iot/ is created empty if the checkout has none yet, so the explicit COPY lines
# of the runtime stage never fail on a missing directory.
# ---------------------------------------------------------------------------
FROM oven/bun:${BUN_VERSION}-slim AS source
WORKDIR /src
COPY . .
RUN mkdir -p kernel plugins shared iot scripts

# ---------------------------------------------------------------------------
# Stage 3: runtime. No compilers, no npm, no dev dependencies.
# ---------------------------------------------------------------------------
FROM oven/bun:${BUN_VERSION}-slim AS runtime

ENV NODE_ENV=production \
    PORT=3000 \
    MQTT_PORT=1883 \
    DATABASE_URL=sqlite:./data/tessera.db \
    BUN_RUNTIME_TRANSPILER_CACHE_PATH=0

WORKDIR /app

# Code and dependencies stay owned by root: the app user can read them, not change them.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=source /src/package.json /src/bunfig.toml /src/tsconfig.json ./
COPY --from=source /src/kernel ./kernel
COPY --from=source /src/plugins ./plugins
COPY --from=source /src/shared ./shared
COPY --from=source /src/iot ./iot
COPY --from=source /src/scripts ./scripts

# The only writable place: SQLite files and other runtime state.
# The base image already has the unprivileged user `bun` (uid/gid 1000).
# Mount a volume here (compose) or an emptyDir/PVC (Kubernetes) to keep it.
RUN mkdir -p /app/data && chown bun:bun /app/data

USER bun:bun

# 3000: HTTP API + health + metrics; 1883: MQTT (iot).
EXPOSE 3000 1883

# The slim image has no curl or wget; Bun's own fetch does the probe (port 3000
# unless PORT says otherwise). Any non-2xx answer, error or timeout exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bun", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Bun is PID 1 and gets SIGTERM itself (no init in between), so the kernel must
# handle SIGTERM to drain; PID 1 has no default signal action.
STOPSIGNAL SIGTERM
CMD ["bun", "kernel/main.ts"]
