#!/usr/bin/env node
// The trapdoor command. Runs the compiled `dist/` when it exists (a production install has no
// tsx); in a checkout whose sources changed after the last `npm run build`, runs the TypeScript
// sources through tsx instead, so a stale build never runs by surprise.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const compiled = join(root, "dist", "src", "cli", "main.js");

/** The newest modification time of any file under `dir`. */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

function sourcesChangedSinceBuild() {
  const sources = join(root, "src");
  if (!existsSync(sources) || !existsSync(join(root, "node_modules", "tsx"))) return false;
  const client = join(root, "clients", "typescript", "src"); // the CLI is built on it
  const latest = Math.max(newest(sources), existsSync(client) ? newest(client) : 0);
  return latest > statSync(compiled).mtimeMs;
}

if (existsSync(compiled) && !sourcesChangedSinceBuild()) {
  await import(compiled);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
