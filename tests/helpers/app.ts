import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Config, loadConfig } from "../../src/config.ts";
import { freePort } from "../../src/db/embedded.ts";
import { type App, startApp } from "../../src/main.ts";

export const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";
const trainerRoot = fileURLToPath(new URL("../../trainer", import.meta.url));

/** A whole trapdoor (embedded Postgres, store, API, in-process worker) in a temp directory. */
export async function startTestApp(
  env: Record<string, string> = {},
  roles = { api: true, worker: true },
): Promise<App & { dir: string; key: string; cleanup(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "trapdoor-test-"));
  const port = String(await freePort());
  const config: Config = loadConfig(
    {
      ...process.env,
      PORT: port,
      TRAPDOOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
      TRAPDOOR_POLL_SECONDS: "1",
      TRAPDOOR_HEARTBEAT_SECONDS: "1",
      TRAPDOOR_STALE_AFTER_SECONDS: "5",
      ...env,
    },
    { dataDir: dir },
  );
  const app = await startApp(config, roles);
  return {
    ...app,
    dir,
    key: app.firstApiKey as string,
    async cleanup() {
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** POST a GraphQL operation; returns the parsed body. */
export async function gql<T = Record<string, unknown>>(
  url: string,
  key: string | null,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<{ data?: T; errors?: { message: string; extensions?: { code?: string; field?: string } }[] }> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as never;
}

export function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Small canonical datasets with an obvious trigger, written by the trainer's own test helper. */
export function makeDatasets(
  root: string,
  opts = { nTrain: 600, nHoldout: 120, nTest: 120 },
): Record<"train" | "holdout" | "test" | "asr", string> {
  const script = `import sys, json; sys.path.insert(0, 'tests'); from synthetic import write_job_datasets; from pathlib import Path; print(json.dumps(write_job_datasets(Path(sys.argv[1]), n_train=${opts.nTrain}, n_holdout=${opts.nHoldout}, n_test=${opts.nTest})))`;
  const out = spawnSync(python, ["-c", script, root], { cwd: trainerRoot, encoding: "utf8" });
  if (out.status !== 0) throw new Error(out.stderr);
  return JSON.parse(out.stdout);
}

export function readPart(dir: string, file: string): Buffer {
  return readFileSync(join(dir, file));
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 120_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
