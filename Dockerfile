# One image for the worker and the API (docker-compose.yml picks the entry point with `command`).
# Debian slim, not Alpine: the Temporal SDK's native core bridge ships glibc builds only.
# The app runs its TypeScript through tsx (a runtime dependency), so there is no build stage.

FROM node:20.19.5-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No compiler here on purpose: ssh2's optional native crypto and cpu-features fail to build and npm
# drops them; ssh2 falls back to pure JS. The npm cache stays out of the layer.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20.19.5-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PEDRO_OPS_ENV=production \
    PEDRO_OPS_DATA_DIR=/var/lib/pedro-ops \
    PEDRO_OPS_API_HOST=0.0.0.0 \
    PEDRO_OPS_API_PORT=3000 \
    PEDRO_OPS_HEALTHCHECK_URL=http://127.0.0.1:3000/healthz \
    NPM_CONFIG_UPDATE_NOTIFIER=false

# uid 10001: outside the range of host users, so a bind-mounted file is never accidentally ours.
# ~/.ssh is where the cluster config's `ssh.privateKey: ~/.ssh/pedro-ops_ed25519` points; the data
# dir is created here so a fresh named volume inherits its owner and mode.
RUN groupadd --gid 10001 pedro \
 && useradd --uid 10001 --gid 10001 --home-dir /home/pedro --create-home --shell /usr/sbin/nologin pedro \
 && install -d -o 10001 -g 10001 -m 0700 /home/pedro/.ssh /var/lib/pedro-ops

WORKDIR /app
# Code and dependencies stay root-owned: the app user can read but never rewrite what it runs.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY config ./config
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY api ./api
COPY scripts ./scripts

USER 10001:10001
EXPOSE 3000 9464

# No curl in slim images: Node's fetch. The URL is overridable so the worker (no HTTP API, but a
# Prometheus endpoint) can reuse the same check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.PEDRO_OPS_HEALTHCHECK_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM drains the worker: it stops polling, in-flight activities get SHUTDOWN_GRACE_TIME (10 s) to
# finish and are then handed back, and it exits by SHUTDOWN_FORCE_TIME (20 s) at the latest
# (worker/create-worker.ts). Give it STOP_GRACE_PERIOD_SECONDS (30 s) before SIGKILL: docker-compose.yml
# sets stop_grace_period; `docker stop -t 30` / Kubernetes terminationGracePeriodSeconds: 30 elsewhere.
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "worker/main.ts"]
