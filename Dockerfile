# Node 24, the LTS line the project declares (.nvmrc, package.json engines) and tests on.
# Stages: deps (every dependency) → build → runtime (the image `docker compose up` runs, last so it is the default);
# test (deps + Chromium + redis-server + the whole repository) runs the suite: `docker compose run --rm test`.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
ENV CHECKPOINT_DISABLE=1 \
    PRISMA_HIDE_UPDATE_MESSAGE=1 \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

COPY package.json package-lock.json ./
# No dependency needs its install script: Prisma generates from its bundled WebAssembly engine
# (the build script sets PRISMA_SCHEMA_ENGINE_BINARY=/bin/false), so no engine is downloaded.
RUN npm ci --ignore-scripts

# Build: generate the Prisma client, compile, then drop the dev dependencies.
FROM deps AS build
COPY tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY prisma ./prisma
COPY scripts ./scripts
COPY src ./src
# prisma generate, tsc, then the Lua scripts copied into dist/. Then only what runs stays:
# - prisma (the CLI) and typescript are optional peers of @prisma/client, so npm marks them dev *and* optional,
#   and `--omit=dev` alone keeps them with Prisma Studio, pglite, effect and react-dom (422 MB in all);
#   the one other optional package is pg-cloudflare, for Cloudflare Workers only;
# - @prisma/client ships a query compiler per database: the generated client loads the PostgreSQL one only.
RUN npm run build \
 && npm prune --omit=dev --omit=optional --ignore-scripts \
 && find node_modules/@prisma/client/runtime -name 'query_compiler_*' ! -name '*.postgresql.*' -delete

# The test suite, against the Redis and PostgreSQL that TEST_REDIS_URL and TEST_DATABASE_URL name (the compose
# `test` service sets them). Debian's chromium for the browser tests; redis-server for the tests that start
# their own Redis nodes on loopback; curl for the README's quick tour, which a test runs as pasted. Runs as root,
# like a fresh CI machine.
FROM deps AS test
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-liberation redis-server curl \
 && rm -rf /var/lib/apt/lists/*
COPY . .
ENV CI=true
CMD ["npm", "test"]

# Runtime: the build output, production dependencies and the migrations (applied at start unless MIGRATE=false).
FROM node:24-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=4000 \
    CHECKPOINT_DISABLE=1 \
    npm_config_update_notifier=false \
    npm_config_fund=false

COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/scripts ./scripts
# The build stamp is made newer than everything copied, so `npm run token` and `npm run db:migrate`
# inside the container never try to rebuild (there are no sources here).
RUN touch dist/.built

# The files stay owned by root: the service only reads them.
USER node
EXPOSE 4000

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node is PID 1 and handles SIGTERM itself: graceful shutdown within SHUTDOWN_TIMEOUT_MS (default 8 s).
CMD ["node", "dist/main.js"]
