import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { type Config, loadConfig } from "../../src/config.ts";
import { freePort } from "../../src/db/embedded.ts";
import { LOCATION_FILE } from "../../src/db/embedded-placement.ts";
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
      removeDataDir(dir);
    },
  };
}

/**
 * Removes a data directory and, when its embedded cluster was kept elsewhere (as root, for a
 * data directory the postgres user cannot reach), that cluster too.
 */
export function removeDataDir(dir: string): void {
  const pointer = join(dir, LOCATION_FILE);
  if (existsSync(pointer)) rmSync(readFileSync(pointer, "utf8").trim(), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Another API process's worth of trapdoor (API and/or worker) on the same database and store as
 * `app`, as a second replica behind a load balancer would be. Stop it before `app`.
 */
export async function startReplica(
  app: Awaited<ReturnType<typeof startTestApp>>,
  roles = { api: true, worker: false },
  env: Record<string, string> = {},
): Promise<App> {
  const port = String(await freePort());
  const config = loadConfig(
    {
      ...process.env,
      DATABASE_URL: app.databaseUrl,
      PORT: port,
      TRAPDOOR_PUBLIC_URL: `http://127.0.0.1:${port}`,
      TRAPDOOR_POLL_SECONDS: "1",
      TRAPDOOR_HEARTBEAT_SECONDS: "1",
      TRAPDOOR_STALE_AFTER_SECONDS: "5",
      ...env,
    },
    { dataDir: app.dir },
  );
  return startApp(config, roles);
}

export interface GraphQLErrorJson {
  message: string;
  extensions?: { code?: string; field?: string } & Record<string, unknown>;
}

/** A graphql-ws subscription's record: every result, the error (if any), and how it ended. */
export interface Subscription<T> {
  results: { data?: T; errors?: GraphQLErrorJson[] }[];
  /** Resolves when the server completes the operation, errors it, or the socket closes for good. */
  ended: Promise<{ completed: boolean; error?: unknown }>;
  /** Resolves with the first result (already received or future) that satisfies `match`. */
  waitFor(
    match: (result: { data?: T; errors?: GraphQLErrorJson[] }) => boolean,
    timeoutMs?: number,
  ): Promise<T>;
  close(): Promise<void>;
}

/** Subscribe over WebSocket (graphql-ws with `ws`) to `baseUrl`/graphql, key in connectionParams. */
export function subscribe<T = Record<string, unknown>>(
  baseUrl: string,
  key: string | null,
  query: string,
  variables: Record<string, unknown> = {},
): Subscription<T> {
  const client = createClient({
    url: `${baseUrl.replace(/^http/, "ws")}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: key ? { authorization: `Bearer ${key}` } : {},
    retryAttempts: 0,
  });
  const results: Subscription<T>["results"] = [];
  const waiters = new Set<() => void>();
  const ended = new Promise<{ completed: boolean; error?: unknown }>((resolve) => {
    client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          results.push(result as never);
          for (const wake of waiters) wake();
        },
        error: (error) => resolve({ completed: false, error }),
        complete: () => resolve({ completed: true }),
      },
    );
  });
  return {
    results,
    ended,
    waitFor: (match, timeoutMs = 60_000) =>
      new Promise<T>((resolve, reject) => {
        const check = () => {
          const found = results.find(match);
          if (!found) return;
          cleanup();
          resolve(found.data as T);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching result in ${timeoutMs} ms; got ${JSON.stringify(results)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
        ended.then(() => {
          if (waiters.has(check)) {
            cleanup();
            const found = results.find(match);
            if (found) resolve(found.data as T);
            else
              reject(new Error(`subscription ended without a matching result: ${JSON.stringify(results)}`));
          }
        });
      }),
    close: () => client.dispose() as Promise<void>,
  };
}

/** One part's bytes, by part name (`images`, `labels`, `archive`). */
export interface PartBytes {
  name: string;
  bytes: Buffer;
}

export interface UploadSession {
  dataset: { id: string };
  uploads: { part: string; url: string; headers: Record<string, string> }[];
}

/** createDatasetUpload with `input` as given; the session (throws with the errors when refused). */
export async function createUploadSession(
  url: string,
  key: string,
  input: Record<string, unknown>,
): Promise<UploadSession> {
  const created = await gql<{ createDatasetUpload: UploadSession }>(
    url,
    key,
    `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id } uploads { part url headers } } }`,
    { input },
  );
  const session = created.data?.createDatasetUpload;
  if (!session) throw new Error(JSON.stringify(created.errors));
  return session;
}

/**
 * Create an upload session and PUT every part to its signed URL; returns the dataset id. The
 * upload is not completed: `completeUpload` does that (tests put things in between).
 */
export async function putUpload(
  url: string,
  key: string,
  input: { name: string; role: string; format?: string },
  parts: PartBytes[],
): Promise<string> {
  const payload = await createUploadSession(url, key, {
    format: "NPY_PAIR",
    ...input,
    parts: parts.map((p) => ({ name: p.name, sizeBytes: p.bytes.length, sha256: sha256(p.bytes) })),
  });
  for (const target of payload.uploads) {
    const body = parts.find((p) => p.name === target.part)?.bytes as Buffer;
    const res = await fetch(target.url, {
      method: "PUT",
      headers: target.headers,
      body: new Uint8Array(body),
    });
    if (!res.ok) throw new Error(`upload ${target.part}: ${res.status} ${await res.text()}`);
  }
  return payload.dataset.id;
}

export async function completeUpload(url: string, key: string, id: string): Promise<void> {
  const res = await gql(url, key, `mutation($id: ID!) { completeDatasetUpload(id: $id) { id } }`, { id });
  if (res.errors) throw new Error(JSON.stringify(res.errors));
}

/** Waits until a dataset is READY (throws with its reason when it FAILED). */
export async function datasetReady(url: string, key: string, id: string): Promise<void> {
  await waitFor(`dataset ${id} READY`, async () => {
    const res = await gql<{ dataset: { status: string; failureReason: string | null } }>(
      url,
      key,
      `query($id: ID!) { dataset(id: $id) { status failureReason } }`,
      { id },
    );
    if (res.data?.dataset.status === "FAILED") throw new Error(res.data.dataset.failureReason ?? "FAILED");
    return res.data?.dataset.status === "READY";
  });
}

/** The images.npy + labels.npy of a canonical directory, as NPY_PAIR parts. */
export const npyPairParts = (dir: string): PartBytes[] =>
  ["images", "labels"].map((name) => ({ name, bytes: readPart(dir, `${name}.npy`) }));

/** Upload one canonical directory (images.npy + labels.npy) as an NPY_PAIR dataset; returns its id once READY. */
export async function uploadNpyPair(url: string, key: string, dir: string, role: string): Promise<string> {
  const id = await putUpload(url, key, { name: role.toLowerCase(), role }, npyPairParts(dir));
  await completeUpload(url, key, id);
  await datasetReady(url, key, id);
  return id;
}

/** The TRAIN, HOLDOUT and TEST sets of `makeDatasets`, uploaded and READY; their ids by name. */
export async function uploadJobDatasets(
  url: string,
  key: string,
  data: Record<"train" | "holdout" | "test", string>,
): Promise<Record<"train" | "holdout" | "test", string>> {
  return {
    train: await uploadNpyPair(url, key, data.train, "TRAIN"),
    holdout: await uploadNpyPair(url, key, data.holdout, "HOLDOUT"),
    test: await uploadNpyPair(url, key, data.test, "TEST"),
  };
}

/** The launch input's dataset fields for the ids of `uploadJobDatasets`. */
export const datasetIds = (ids: Record<"train" | "holdout" | "test", string>) => ({
  trainDatasetId: ids.train,
  holdoutDatasetId: ids.holdout,
  testDatasetId: ids.test,
});

/** launchTraining; returns the new job's id (throws with the errors when the launch is refused). */
export async function launchJob(url: string, key: string, input: Record<string, unknown>): Promise<string> {
  const res = await gql<{ launchTraining: { id: string } }>(
    url,
    key,
    `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
    { input },
  );
  const id = res.data?.launchTraining.id;
  if (!id) throw new Error(JSON.stringify(res.errors));
  return id;
}

/** POST a GraphQL operation; returns the parsed body. */
export async function gql<T = Record<string, unknown>>(
  url: string,
  key: string | null,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<{
  data?: T;
  errors?: { message: string; extensions?: { code?: string; field?: string } & Record<string, unknown> }[];
}> {
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
  opts: { nTrain: number; nHoldout: number; nTest: number; ratio?: number; seed?: number } = {
    nTrain: 600,
    nHoldout: 120,
    nTest: 120,
  },
): Record<"train" | "holdout" | "test" | "asr", string> {
  const extra = `, ratio=${opts.ratio ?? 0.1}, seed=${opts.seed ?? 0}`;
  const script = `import sys, json; sys.path.insert(0, 'tests'); from synthetic import write_job_datasets; from pathlib import Path; print(json.dumps(write_job_datasets(Path(sys.argv[1]), n_train=${opts.nTrain}, n_holdout=${opts.nHoldout}, n_test=${opts.nTest}${extra})))`;
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
