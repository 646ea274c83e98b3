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
# NestJS 12 packages are ESM loaded through require(esm): Node 20.19+ (or 22.12+) is required.
# The node:20-bookworm-slim tag always tracks the latest 20.x release.
ARG NODE_IMAGE=node:20-bookworm-slim

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

# Liveness only (/health/live): readiness (/health) also needs Redis and Ollama, and a container that
# is up but waiting for them should not be restarted. Slim images have no curl, so use Node's fetch.
# Worker and model-pull containers have no HTTP port: docker-compose.yml disables this check for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Exec form: node is PID 1 and receives SIGTERM directly (the app registers shutdown hooks).
CMD ["node", "dist/main.js"]
