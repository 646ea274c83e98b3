# syntax=docker/dockerfile:1
#
# ai-assistant image: one image, three commands.
#   API (+ Socket.IO gateway):  node dist/main.js            (default CMD)
#   standalone AI worker:       node dist/worker.js
#   one-shot model pull:        node dist/scripts/model-pull.js
#
# Build:  docker build -t ai-assistant .
# Run:    docker run --rm -p 3000:3000 -e REDIS_URL=redis://HOST:6379 -e OLLAMA_HOST=http://HOST:11434 ai-assistant
#
# NestJS 12 packages are ESM loaded through require(esm): Node 20.19+ or 22.12+ is required.
# Node 22 rather than 20: Node 20 reached end of life in April 2026, and the lockfile already holds
# packages declaring newer engines (file-type, a runtime dependency of @nestjs/common: node >=22;
# the Nest CLI's commander/@angular-devkit: node >=22.12). The tag tracks the latest 22.x release.
# Override with: docker build --build-arg NODE_IMAGE=node:20-bookworm-slim .
ARG NODE_IMAGE=node:22-bookworm-slim

# ---------------------------------------------------------------------------------------------
# build: full dependency tree (Nest CLI, TypeScript) -> dist/ (including dist/public, the web page)
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# @scarf/scarf (pulled in by swagger-ui-dist) phones home from its install script; opt out.
ENV SCARF_ANALYTICS=false
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------------------------
# runtime: production dependencies + compiled output only, running as the unprivileged `node` user
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    SCARF_ANALYTICS=false \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist

# Files stay root-owned (read-only for the app); the process itself runs unprivileged.
USER node
EXPOSE 3000

# Liveness only (/health/live): the readiness check (/health) also depends on Redis and Ollama, and an
# API that is up but waiting for them is still alive. Slim images have no curl: use Node's fetch.
# Worker and model-pull containers have no HTTP port: docker-compose.yml disables this check for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Exec form: SIGTERM reaches node directly (or through the init process of `docker run --init` /
# compose `init: true`); the app handles it with Nest shutdown hooks.
CMD ["node", "dist/main.js"]
