# trapdoor images, one multi-stage build:
#   docker build --target api    -t trapdoor-api .      the GraphQL API: Node only, no Python
#   docker build --target worker -t trapdoor-worker .   queues: training (CUDA when a GPU is
#                                                       visible, CPU otherwise), ingest, poisoning
# Base images are pinned by exact tag (README, "Images": unverified from our machines, which run
# no Docker engine; scripts/image-smoke.sh reproduces both images' files instead).
ARG NODE_IMAGE=node:24.22.3-bookworm-slim
ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# --- build: compile TypeScript, then keep production dependencies only --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
# the CLI is built on the TypeScript client package
COPY clients/typescript ./clients/typescript
# the web console (Vite builds it into dist/console; the API serves it at /console/)
COPY console ./console
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- api: dist/ + production node_modules, non-root, no compilers, no Python ---------------------
FROM ${NODE_IMAGE} AS api
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=4000
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY schema ./schema
USER node
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini is PID 1: SIGTERM reaches Node, which stops the API cleanly (exit 0).
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/trapdoor.js"]
CMD ["serve"]

# --- worker: CUDA PyTorch 2.x + Node 24 + dist/ + the trainer package ----------------------------
FROM ${TORCH_IMAGE} AS worker
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 trapdoor
# Node 24 itself, from the API's base image (same binary, no package manager needed here).
COPY --from=api /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production TRAPDOOR_PYTHON=python TRAPDOOR_DATA_DIR=/scratch
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY schema ./schema
COPY trainer/trapdoor_trainer ./trainer/trapdoor_trainer
RUN mkdir -p /scratch && chown trapdoor /scratch
USER trapdoor
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/trapdoor.js"]
CMD ["worker"]
