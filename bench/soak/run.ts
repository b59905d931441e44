/**
 * Soak run: trapdoor as separate processes (embedded Postgres host, API, a training worker and a
 * dataset worker) on a temp data directory, N tenants working concurrently for M minutes, a
 * worker SIGKILLed and restarted every K minutes, and a flood phase. See bench/soak/README.md.
 *
 *   node --import tsx bench/soak/run.ts --tenants 3 --minutes 2 --kill-every 1 [--out result.json]
 *
 * Not part of `make test`. Markdown summary on stdout, progress on stderr, JSON to --out. Exits 1
 * on a 5xx, an invariant violation or a process that died unasked.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadConfig } from "../../src/config.ts";
import { createDataSource } from "../../src/db/data-source.ts";
import { createObjectStore } from "../../src/storage/index.ts";
import { removeDataDir } from "../../tests/helpers/app.ts";
import { checkInvariants, type InvariantReport } from "../../tests/helpers/invariants.ts";

const { values: args } = parseArgs({
  options: {
    tenants: { type: "string", default: "3" },
    minutes: { type: "string", default: "10" },
    "kill-every": { type: "string", default: "2" },
    out: { type: "string" },
    // 50: the most root fields an operation may have (api/limits.ts); more is refused unread.
    "flood-aliases": { type: "string", default: "50" },
    // Per tenant per 60 s window: the tenants' own polling fits, the flood does not.
    "rate-limit": { type: "string", default: "1200" },
    "flood-seconds": { type: "string", default: "10" },
    "settle-seconds": { type: "string", default: "180" },
    keep: { type: "boolean", default: false },
  },
});
const TENANTS = Number(args.tenants);
const MINUTES = Number(args.minutes);
const KILL_EVERY_MS = Number(args["kill-every"]) * 60_000;
const FLOOD_ALIASES = Number(args["flood-aliases"]);
const FLOOD_MS = Number(args["flood-seconds"]) * 1000;
const SETTLE_MS = Number(args["settle-seconds"]) * 1000;
const SWEEP_SECONDS = 15;
const OUT = args.out ?? join(tmpdir(), `trapdoor-soak-${Date.now()}.json`);
if (!(TENANTS >= 1 && MINUTES > 0 && KILL_EVERY_MS > 0))
  throw new Error("--tenants, --minutes, --kill-every must be > 0");

const repo = fileURLToPath(new URL("../..", import.meta.url));
const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const log = (msg: string) => process.stderr.write(`[soak ${elapsed().toFixed(0).padStart(4)}s] ${msg}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- processes

type Role = "postgres-host" | "api" | "worker-train" | "worker-data";

interface Proc {
  role: Role;
  child: ChildProcess;
  /** Set when this runner stopped or killed it (any other exit is a failure). */
  expectedExit: boolean;
}

const procs: Proc[] = [];
const events: { t: number; event: string }[] = [];
const unexpectedExits: string[] = [];
const event = (what: string) => {
  events.push({ t: Math.round(elapsed()), event: what });
  log(what);
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Spawns `argv` in its own process group (so cleanup reaches the trainers it starts); resolves on `ready`. */
function startProcess(role: Role, argv: string[], env: NodeJS.ProcessEnv, ready: RegExp, logDir: string) {
  const child = spawn(process.execPath, argv, {
    cwd: repo,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const proc: Proc = { role, child, expectedExit: false };
  procs.push(proc);
  const file = createWriteStream(join(logDir, `${role}.log`), { flags: "a" });
  let output = "";
  return new Promise<{ proc: Proc; output: string }>((resolve, reject) => {
    let up = false;
    const timer = setTimeout(
      () => reject(new Error(`${role} did not start in 120 s:\n${output.slice(-3000)}`)),
      120_000,
    );
    const onData = (chunk: Buffer) => {
      file.write(chunk);
      if (up) return;
      output += chunk;
      const match = ready.exec(output);
      if (match) {
        up = true;
        clearTimeout(timer);
        resolve({ proc, output });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.on("exit", (code, signal) => {
      file.end();
      if (!up) {
        clearTimeout(timer);
        reject(new Error(`${role} exited (${code ?? signal}) before it was ready:\n${output.slice(-3000)}`));
      } else if (!proc.expectedExit) {
        unexpectedExits.push(`${role} pid ${child.pid} exited (${code ?? signal})`);
        event(`UNEXPECTED: ${role} pid ${child.pid} exited (${code ?? signal})`);
      }
    });
  });
}

const current = (role: Role) =>
  procs.filter((p) => p.role === role && p.child.exitCode === null && p.child.signalCode === null).at(-1);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to each live process group, newest first, the database host last; SIGKILL after 15 s. */
async function stopAll(): Promise<void> {
  const order = [...procs]
    .reverse()
    .sort((a, b) => Number(a.role === "postgres-host") - Number(b.role === "postgres-host"));
  for (const p of order) {
    p.expectedExit = true;
    const pid = p.child.pid as number;
    const group = () => {
      try {
        process.kill(-pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    if (!group()) continue;
    try {
      process.kill(-pid, "SIGTERM");
    } catch {}
    const deadline = Date.now() + 15_000;
    while (group() && Date.now() < deadline) await sleep(100);
    if (group()) {
      log(`${p.role} (group ${pid}) ignored SIGTERM for 15 s: SIGKILL`);
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
    }
  }
}

/** Last resort on exit: nothing this runner started may outlive it. */
function killAllSync(): void {
  for (const p of procs) {
    try {
      process.kill(-(p.child.pid as number), "SIGKILL");
    } catch {}
  }
}

// ---------------------------------------------------------------- /proc sampling

function readProc(pid: number, file: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch {
    return null;
  }
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readProc(pid, "status") ?? "");
  return m ? Number(m[1]) : 0;
}

/** pid → parent pid of every process (one /proc walk per sample). */
function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProc(Number(entry), "stat");
    // The command name may contain spaces; the fields after its closing parenthesis do not.
    const fields = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields?.[1]) map.set(Number(entry), Number(fields[1]));
  }
  return map;
}

function descendants(pid: number, tree: Map<number, number>): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of tree)
      if (parent === p) {
        out.push(child);
        walk(child);
      }
  };
  walk(pid);
  return out;
}

/** The trainer runs under `pid` (their command line names trapdoor_trainer's `run`). */
function trainerPids(pid: number): number[] {
  return descendants(pid, parents()).filter((d) => {
    const cmd = readProc(d, "cmdline")?.split("\0") ?? [];
    return cmd.includes("trapdoor_trainer") && cmd.includes("run");
  });
}

interface RssSample {
  t: number;
  /** MB per role; postgres is the postmaster and every backend (shared buffers counted in each). */
  mb: Record<string, number>;
  postgresProcesses: number;
  trainers: number;
}

const rss: RssSample[] = [];

function sampleRss(postmasterPid: () => number | null): void {
  const tree = parents();
  const mb: Record<string, number> = {};
  const toMb = (kb: number) => Math.round(kb / 102.4) / 10;
  let trainers = 0;
  let trainerKb = 0;
  for (const role of ["api", "worker-train", "worker-data"] as Role[]) {
    const p = current(role);
    if (!p) continue;
    mb[role] = toMb(rssKb(p.child.pid as number));
    for (const d of descendants(p.child.pid as number, tree)) {
      trainers++;
      trainerKb += rssKb(d);
    }
  }
  mb["worker children"] = toMb(trainerKb);
  const pm = postmasterPid();
  let pgCount = 0;
  if (pm) {
    const pids = [pm, ...descendants(pm, tree)];
    pgCount = pids.length;
    mb.postgres = toMb(pids.reduce((s, p) => s + rssKb(p), 0));
  }
  rss.push({ t: Math.round(elapsed()), mb, postgresProcesses: pgCount, trainers });
}

// ---------------------------------------------------------------- HTTP and GraphQL, measured

interface Sample {
  op: string;
  ms: number;
  t: number;
}

const samples: Sample[] = [];
const errors = new Map<string, number>();
const errorExamples = new Map<string, string>();
let requests = 0;
let status5xx = 0;

function countError(code: string, example: string): void {
  errors.set(code, (errors.get(code) ?? 0) + 1);
  if (!errorExamples.has(code)) errorExamples.set(code, example.slice(0, 300));
}

interface GqlResult<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** One measured request; network failures count as errors, never throw. */
async function measured(
  op: string,
  url: string,
  init: RequestInit,
  record = true,
): Promise<{ status: number; body: string } | null> {
  const t0 = performance.now();
  requests++;
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
    const body = await res.text();
    const ms = performance.now() - t0;
    if (record) samples.push({ op, ms, t: elapsed() });
    if (res.status >= 500) status5xx++;
    if (res.status >= 400) countError(`http:${res.status}`, `${op}: ${body}`);
    return { status: res.status, body };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    const name = (error as Error).name === "TimeoutError" ? "timeout" : (cause ?? (error as Error).name);
    countError(`network:${name}`, `${op}: ${(error as Error).message}`);
    return null;
  }
}

async function gql<T>(
  op: string,
  api: string,
  key: string,
  query: string,
  variables: Record<string, unknown> = {},
  record = true,
): Promise<GqlResult<T>> {
  const res = await measured(
    op,
    `${api}/graphql`,
    {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    },
    record,
  );
  if (!res) return {};
  let parsed: GqlResult<T>;
  try {
    parsed = JSON.parse(res.body) as GqlResult<T>;
  } catch {
    countError("bad-json", `${op}: ${res.body}`);
    return {};
  }
  for (const e of parsed.errors ?? [])
    countError(`gql:${e.extensions?.code ?? "NONE"}`, `${op}: ${e.message}`);
  return parsed;
}

// ---------------------------------------------------------------- the tenants' work

interface Tenant {
  name: string;
  key: string;
  base?: Record<"train" | "holdout" | "test", string>;
  jobs: number;
  jobsByStatus: Record<string, number>;
  datasetsUploaded: number;
  datasetsDeleted: number;
  lastJob?: string;
}

const DATA_PARTS: Record<string, { name: string; bytes: Buffer }[]> = {};

function makeDatasets(root: string): Record<"train" | "holdout" | "test", string> {
  const script = `import sys, json; sys.path.insert(0, 'tests'); from synthetic import write_job_datasets; from pathlib import Path; print(json.dumps(write_job_datasets(Path(sys.argv[1]), n_train=200, n_holdout=40, n_test=40)))`;
  const out = spawnSync(python, ["-c", script, root], { cwd: join(repo, "trainer"), encoding: "utf8" });
  if (out.status !== 0) throw new Error(out.stderr);
  return JSON.parse(out.stdout);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Upload an NPY_PAIR dataset and complete it; returns its id (null when a step failed). */
async function upload(
  api: string,
  t: Tenant,
  which: "train" | "holdout" | "test",
  role: string,
): Promise<string | null> {
  const parts = DATA_PARTS[which] as { name: string; bytes: Buffer }[];
  const created = await gql<{
    createDatasetUpload: {
      dataset: { id: string };
      uploads: { part: string; url: string; headers: Record<string, string> }[];
    };
  }>(
    "createDatasetUpload",
    api,
    t.key,
    `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id } uploads { part url headers } } }`,
    {
      input: {
        name: `${which}-${t.datasetsUploaded}`,
        role,
        format: "NPY_PAIR",
        parts: parts.map((p) => ({ name: p.name, sizeBytes: p.bytes.length, sha256: sha256(p.bytes) })),
      },
    },
  );
  const payload = created.data?.createDatasetUpload;
  if (!payload) return null;
  for (const target of payload.uploads) {
    const body = parts.find((p) => p.name === target.part)?.bytes as Buffer;
    const res = await measured("PUT /objects", target.url, {
      method: "PUT",
      headers: target.headers,
      body: new Uint8Array(body),
    });
    if (!res || res.status >= 300) return null;
  }
  t.datasetsUploaded++;
  const done = await gql(
    "completeDatasetUpload",
    api,
    t.key,
    `mutation($id: ID!) { completeDatasetUpload(id: $id) { id } }`,
    { id: payload.dataset.id },
  );
  return done.errors ? null : payload.dataset.id;
}

async function datasetStatus(api: string, t: Tenant, id: string): Promise<string | null> {
  const res = await gql<{ dataset: { status: string } | null }>(
    "dataset(id)",
    api,
    t.key,
    `query($id: ID!) { dataset(id: $id) { status } }`,
    { id },
  );
  return res.data?.dataset?.status ?? null;
}

async function untilDataset(api: string, t: Tenant, id: string, deadline: number): Promise<string | null> {
  while (Date.now() < deadline + 60_000) {
    const status = await datasetStatus(api, t, id);
    if (status === "READY" || status === "FAILED") return status;
    await sleep(500);
  }
  return null;
}

const JOB_FIELDS = "id status attempt progress { stage epoch fraction } metrics { ca }";

/** One tenant's loop: upload, launch, poll, delete, until `deadline` (then its last job is left to settle). */
async function tenantLoop(api: string, t: Tenant, deadline: number, stop: { flood: boolean }): Promise<void> {
  const ids: Partial<Record<"train" | "holdout" | "test", string>> = {};
  for (const [which, role] of [
    ["train", "TRAIN"],
    ["holdout", "HOLDOUT"],
    ["test", "TEST"],
  ] as const) {
    const id = await upload(api, t, which, role);
    if (!id || (await untilDataset(api, t, id, deadline)) !== "READY")
      throw new Error(`${t.name}: base ${which} dataset did not become READY`);
    ids[which] = id;
  }
  t.base = ids as Record<"train" | "holdout" | "test", string>;
  let cycle = 0;
  while (Date.now() < deadline) {
    cycle++;
    const launched: GqlResult<{ launchTraining: { id: string } }> = await gql(
      "launchTraining",
      api,
      t.key,
      `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
      {
        input: {
          method: "NO_DEFENSE",
          architecture: "small-cnn",
          trainDatasetId: t.base.train,
          holdoutDatasetId: t.base.holdout,
          testDatasetId: t.base.test,
          hyperparameters: { epochs: 1, batchSize: 32 },
          idempotencyKey: `${t.name}-${cycle}`,
        },
      },
    );
    const jobId: string | undefined = launched.data?.launchTraining.id;
    if (jobId) {
      t.jobs++;
      t.lastJob = jobId;
    }
    // An extra dataset per cycle, deleted again: every other one while it is still being ingested.
    const extra = await upload(api, t, "test", "TEST");
    if (extra && cycle % 2 === 0) await untilDataset(api, t, extra, deadline);
    if (extra) {
      const del = await gql("deleteDataset", api, t.key, `mutation($id: ID!) { deleteDataset(id: $id) }`, {
        id: extra,
      });
      if (!del.errors) t.datasetsDeleted++;
    }
    if (jobId && cycle % 4 === 0)
      await gql("cancelJob", api, t.key, `mutation($id: ID!) { cancelJob(id: $id) { id status } }`, {
        id: jobId,
      });
    // Poll like a dashboard until the job ends (or the run does).
    while (jobId) {
      const job: GqlResult<{ job: { status: string } | null }> = await gql(
        "job(id)",
        api,
        t.key,
        `query($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`,
        { id: jobId },
      );
      await gql(
        "jobs(first: 20)",
        api,
        t.key,
        `query { jobs(first: 20) { edges { node { ${JOB_FIELDS} } } pageInfo { hasNextPage } } }`,
      );
      await gql(
        "datasets(first: 20)",
        api,
        t.key,
        `query { datasets(first: 20) { edges { node { id status role } } } }`,
      );
      const status = job.data?.job?.status;
      if (status === "SUCCEEDED" || status === "FAILED" || status === "CANCELLED") {
        t.jobsByStatus[status] = (t.jobsByStatus[status] ?? 0) + 1;
        break;
      }
      if (Date.now() >= deadline) break;
      // The victim of the flood phase probes on its own; its loop pauses meanwhile.
      while (stop.flood && t.name === "soak-0") await sleep(200);
      await sleep(1000);
    }
    if (!jobId) await sleep(2000);
  }
}

// ---------------------------------------------------------------- the flood phase

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const round = (x: number) => Math.round(x * 10) / 10;

interface FloodResult {
  victim: string;
  flooder: string;
  aliases: number;
  idle: { requests: number; p50: number; p99: number };
  flood: { requests: number; p50: number; p99: number };
  p99Ratio: number;
  floodRequests: number;
  aliasQueries: { ok: number; refused: Record<string, number>; p50: number; p99: number };
}

/** Sequential job(id) reads by `victim` for `ms`; its latencies. */
async function probe(api: string, victim: Tenant, ms: number): Promise<number[]> {
  const out: number[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const t0 = performance.now();
    await gql(
      "probe job(id)",
      api,
      victim.key,
      `query($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`,
      { id: victim.lastJob },
      false,
    );
    out.push(performance.now() - t0);
    await sleep(50);
  }
  return out;
}

async function floodPhase(
  api: string,
  victim: Tenant,
  flooder: Tenant,
  stop: { flood: boolean },
): Promise<FloodResult> {
  stop.flood = true;
  event(`flood phase: ${victim.name} probes idle for ${FLOOD_MS / 1000} s`);
  const idle = await probe(api, victim, FLOOD_MS);
  const id = flooder.lastJob ?? victim.lastJob;
  const aliasQuery = `query($id: ID!) { ${Array.from({ length: FLOOD_ALIASES }, (_, i) => `j${i}: job(id: $id) { id }`).join(" ")} }`;
  const aliasMs: number[] = [];
  const refused: Record<string, number> = {};
  let floodRequests = 0;
  const end = Date.now() + FLOOD_MS;
  event(
    `flood phase: ${flooder.name} sends ${FLOOD_ALIASES}-alias job(id) queries (4 loops) and a burst (16 loops)`,
  );
  const aliasLoop = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      floodRequests++;
      const res = await gql("flood alias job(id)", api, flooder.key, aliasQuery, { id }, false);
      aliasMs.push(performance.now() - t0);
      for (const e of res.errors ?? [])
        refused[e.extensions?.code ?? "NONE"] = (refused[e.extensions?.code ?? "NONE"] ?? 0) + 1;
    }
  };
  const burstLoop = async () => {
    while (Date.now() < end) {
      floodRequests++;
      await gql(
        "flood jobs(first: 20)",
        api,
        flooder.key,
        `query { jobs(first: 20) { edges { node { ${JOB_FIELDS} } } } }`,
        {},
        false,
      );
    }
  };
  const [during] = await Promise.all([
    probe(api, victim, FLOOD_MS),
    ...Array.from({ length: 4 }, aliasLoop),
    ...Array.from({ length: 16 }, burstLoop),
  ]);
  stop.flood = false;
  const stats = (v: number[]) => ({
    requests: v.length,
    p50: round(percentile(v, 50)),
    p99: round(percentile(v, 99)),
  });
  const result: FloodResult = {
    victim: victim.name,
    flooder: flooder.name,
    aliases: FLOOD_ALIASES,
    idle: stats(idle),
    flood: stats(during as number[]),
    p99Ratio: round(percentile(during as number[], 99) / percentile(idle, 99)),
    floodRequests,
    aliasQueries: {
      ok: aliasMs.length - Object.values(refused).reduce((a, b) => a + b, 0),
      refused,
      p50: round(percentile(aliasMs, 50)),
      p99: round(percentile(aliasMs, 99)),
    },
  };
  event(
    `flood phase done: victim p99 ${result.idle.p99} ms idle, ${result.flood.p99} ms during (${result.p99Ratio}×)`,
  );
  return result;
}

// ---------------------------------------------------------------- kill and restart

interface KillRecord {
  t: number;
  role: Role;
  pid: number;
  children: number;
  /** Of those, trainer processes (`python -m trapdoor_trainer run`). */
  trainers: number;
  /** Children (trainers) still alive 5 s after their worker was killed; then killed by pid. */
  orphansAfter5s: number;
  restartSeconds: number;
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "trapdoor-soak-"));
  // As root, Postgres runs as the `postgres` user, which must reach the data directory below this.
  chmodSync(dir, 0o755);
  const dataDir = join(dir, "data");
  const logDir = join(dir, "logs");
  mkdirSync(logDir, { recursive: true });
  log(
    `data and logs in ${dir}; ${TENANTS} tenants, ${MINUTES} min, a worker killed every ${KILL_EVERY_MS / 60_000} min`,
  );
  const cleanup = async () => {
    await stopAll();
    if (!args.keep) removeDataDir(dir); // and the embedded cluster, where it was kept elsewhere (as root)
  };
  let interrupted = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.once(signal, () => {
      interrupted = true;
      log(`${signal}: stopping every process started`);
      cleanup().finally(() => process.exit(130));
    });
  process.once("exit", killAllSync);
  let sampler: NodeJS.Timeout | undefined;
  try {
    const datasets = makeDatasets(join(dir, "datasets"));
    for (const which of ["train", "holdout", "test"] as const)
      DATA_PARTS[which] = ["images", "labels"].map((name) => ({
        name,
        bytes: readFileSync(join(datasets[which], `${name}.npy`)),
      }));

    const pg = await startProcess(
      "postgres-host",
      ["--import", "tsx", "bench/soak/postgres.ts", dataDir],
      process.env,
      /DATABASE_URL=(\S+)\n/,
      logDir,
    );
    const databaseUrl = (/DATABASE_URL=(\S+)\n/.exec(pg.output) as RegExpExecArray)[1] as string;
    const postmasterPid = () => {
      const file = join(dataDir, "postgres", "postmaster.pid");
      return existsSync(file) ? Number(readFileSync(file, "utf8").split("\n")[0]) : null;
    };
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      TRAPDOOR_DATA_DIR: dataDir,
      TRAPDOOR_PUBLIC_URL: api,
      TRAPDOOR_PYTHON: python,
      TRAPDOOR_POLL_SECONDS: "1",
      TRAPDOOR_HEARTBEAT_SECONDS: "2",
      // A killed worker's jobs and datasets are re-queued after this.
      TRAPDOOR_STALE_AFTER_SECONDS: "10",
      // Scratch left by a killed worker goes at the next sweep; sweep often enough to see it gone.
      TRAPDOOR_SWEEP_INTERVAL_SECONDS: String(SWEEP_SECONDS),
      TRAPDOOR_RATE_LIMIT: args["rate-limit"],
    };
    const trapdoor = (...a: string[]) => ["bin/trapdoor.js", ...a];
    await startProcess("api", trapdoor("serve", "--port", String(port)), env, /trapdoor API on/, logDir);
    const workerArgs: Record<"worker-train" | "worker-data", string[]> = {
      "worker-train": trapdoor("worker", "--queue", "cpu"),
      "worker-data": trapdoor("worker", "--queue", "ingest,poison"),
    };
    const startWorkerProc = (role: "worker-train" | "worker-data") =>
      startProcess(role, workerArgs[role], env, /serving queues/, logDir);
    await Promise.all([startWorkerProc("worker-train"), startWorkerProc("worker-data")]);
    event(`postgres, API (${api}) and two workers up`);

    const tenants: Tenant[] = [];
    for (let i = 0; i < TENANTS; i++) {
      const out = spawnSync(process.execPath, trapdoor("tenant", `soak-${i}`, "--data-dir", dataDir), {
        cwd: repo,
        env,
        encoding: "utf8",
      });
      const key = /API key: (\S+)/.exec(out.stdout)?.[1];
      if (out.status !== 0 || !key) throw new Error(`trapdoor tenant soak-${i} failed: ${out.stderr}`);
      tenants.push({
        name: `soak-${i}`,
        key,
        jobs: 0,
        jobsByStatus: {},
        datasetsUploaded: 0,
        datasetsDeleted: 0,
      });
    }
    event(`${TENANTS} tenants created with \`trapdoor tenant\` while the API runs`);

    sampleRss(postmasterPid);
    sampler = setInterval(() => sampleRss(postmasterPid), 3000);
    const deadline = started + MINUTES * 60_000;
    const stop = { flood: false };
    const loops = tenants.map((t) =>
      tenantLoop(api, t, deadline, stop).catch((error) => {
        event(`tenant ${t.name} stopped: ${(error as Error).message}`);
      }),
    );

    const kills: KillRecord[] = [];
    let flood: FloodResult | null = null;
    const running = () => Date.now() < deadline && !interrupted;
    const floodTask = (async () => {
      if (tenants.length < 2) return;
      await sleep(MINUTES * 30_000);
      const victim = tenants[0] as Tenant;
      // The victim probes its own job; wait for its first launch.
      while (!victim.lastJob && running()) await sleep(500);
      if (running()) flood = await floodPhase(api, victim, tenants[1] as Tenant, stop);
    })();
    const killTask = (async () => {
      for (let i = 0; ; i++) {
        const due = started + (i + 1) * KILL_EVERY_MS;
        while (Date.now() < due && running()) await sleep(500);
        if (!running()) return;
        // The training worker first, then the dataset worker; a training worker is caught busy
        // (a trainer running) when that happens within 30 s.
        const role: "worker-train" | "worker-data" = i % 2 === 0 ? "worker-train" : "worker-data";
        const busyBy = Date.now() + 30_000;
        while (role === "worker-train" && Date.now() < busyBy && running()) {
          const p = current(role);
          if (p && trainerPids(p.child.pid as number).length > 0) break;
          await sleep(250);
        }
        const victim = current(role);
        if (!victim || !running()) continue;
        const pid = victim.child.pid as number;
        const children = descendants(pid, parents());
        const trainers = trainerPids(pid).length;
        victim.expectedExit = true;
        process.kill(pid, "SIGKILL");
        event(`SIGKILL ${role} pid ${pid} (${children.length} child process(es), ${trainers} trainer(s))`);
        const t0 = Date.now();
        await startWorkerProc(role);
        const restartSeconds = round((Date.now() - t0) / 1000);
        event(`${role} restarted in ${restartSeconds} s`);
        await sleep(Math.max(0, 5000 - (Date.now() - t0)));
        const orphans = children.filter(alive);
        // They were started (indirectly) by this run: end them by pid, after counting them.
        for (const o of orphans) {
          try {
            process.kill(o, "SIGKILL");
          } catch {}
        }
        if (orphans.length)
          event(`${orphans.length} child process(es) of the killed ${role} outlived it by 5 s: killed`);
        kills.push({
          t: Math.round((t0 - started) / 1000),
          role,
          pid,
          children: children.length,
          trainers,
          orphansAfter5s: orphans.length,
          restartSeconds,
        });
      }
    })();
    await Promise.all([...loops, floodTask, killTask]);
    event("workload over; letting work settle");
    // Two sweeps after the last kill: a killed attempt's scratch is swept once its job moved on.
    await new Promise((r) => setTimeout(r, 2 * SWEEP_SECONDS * 1000));

    const config = loadConfig({ ...env }, { dataDir });
    const db = createDataSource(databaseUrl);
    await db.initialize();
    let invariants: InvariantReport;
    try {
      invariants = await checkInvariants(
        { db, store: createObjectStore(config) },
        { settleTimeoutMs: SETTLE_MS, pollMs: 1000, dataDir },
      );
    } finally {
      await db.destroy();
    }
    clearInterval(sampler);
    sampleRss(postmasterPid);
    event(`invariants: ${invariants.violations.length} violation(s)`);

    const result = summarize({ tenants, kills, flood, invariants });
    writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(markdown(result));
    log(`JSON written to ${OUT}`);
    const failed = status5xx > 0 || invariants.violations.length > 0 || unexpectedExits.length > 0;
    return failed ? 1 : 0;
  } finally {
    if (sampler) clearInterval(sampler);
    await cleanup();
  }
}

// ---------------------------------------------------------------- report

function summarize(r: {
  tenants: Tenant[];
  kills: KillRecord[];
  flood: FloodResult | null;
  invariants: InvariantReport;
}) {
  const byOp = new Map<string, number[]>();
  for (const s of samples) byOp.set(s.op, [...(byOp.get(s.op) ?? []), s.ms]);
  const ops = [...byOp].map(([op, ms]) => ({
    op,
    count: ms.length,
    p50: round(percentile(ms, 50)),
    p99: round(percentile(ms, 99)),
    max: round(Math.max(...ms)),
  }));
  const roles = [...new Set(rss.flatMap((s) => Object.keys(s.mb)))];
  const rssSummary = roles.map((role) => {
    const series = rss.map((s) => s.mb[role]).filter((v): v is number => v !== undefined);
    return { role, first: series[0] ?? 0, max: Math.max(...series), last: series.at(-1) ?? 0 };
  });
  return {
    config: {
      tenants: TENANTS,
      minutes: MINUTES,
      killEveryMinutes: KILL_EVERY_MS / 60_000,
      floodAliases: FLOOD_ALIASES,
      floodSeconds: FLOOD_MS / 1000,
    },
    wallSeconds: Math.round(elapsed()),
    requests,
    status5xx,
    errors: Object.fromEntries([...errors].sort()),
    errorExamples: Object.fromEntries(errorExamples),
    ops,
    tenants: r.tenants.map(({ key: _key, ...t }) => t),
    kills: r.kills,
    unexpectedExits,
    flood: r.flood,
    rss: { summary: rssSummary, samples: rss },
    invariants: r.invariants,
    events,
  };
}

function markdown(r: ReturnType<typeof summarize>): string {
  const lines = [
    `## Soak: ${r.config.tenants} tenants, ${r.config.minutes} min, worker SIGKILL every ${r.config.killEveryMinutes} min (${r.wallSeconds} s wall)`,
    "",
    `Requests: ${r.requests}; 5xx: ${r.status5xx}; processes that died unasked: ${r.unexpectedExits.length}.`,
    "",
    "| tenant | jobs launched | succeeded | failed | cancelled | datasets uploaded | deleted |",
    "|---|---|---|---|---|---|---|",
    ...r.tenants.map(
      (t) =>
        `| ${t.name} | ${t.jobs} | ${t.jobsByStatus.SUCCEEDED ?? 0} | ${t.jobsByStatus.FAILED ?? 0} | ${t.jobsByStatus.CANCELLED ?? 0} | ${t.datasetsUploaded} | ${t.datasetsDeleted} |`,
    ),
    "",
    "### Errors by code",
    "",
    ...(Object.keys(r.errors).length === 0
      ? ["none"]
      : [
          "| code | count | first example |",
          "|---|---|---|",
          ...Object.entries(r.errors).map(
            ([code, n]) =>
              `| ${code} | ${n} | ${(r.errorExamples[code] ?? "").replace(/\|/g, "\\|").replace(/\n/g, " ")} |`,
          ),
        ]),
    "",
    "### Latency per operation (ms)",
    "",
    "| operation | count | p50 | p99 | max |",
    "|---|---|---|---|---|",
    ...r.ops.map((o) => `| \`${o.op}\` | ${o.count} | ${o.p50} | ${o.p99} | ${o.max} |`),
    "",
    "### Flood phase",
    "",
    r.flood
      ? [
          `${r.flood.flooder} sends one query with ${r.flood.aliases} aliased \`job(id:)\` fields (4 loops) and a burst of \`jobs(first: 20)\` (16 loops) for ${r.config.floodSeconds} s; ${r.flood.victim} reads \`job(id)\` sequentially.`,
          "",
          "| victim `job(id)` | requests | p50 ms | p99 ms |",
          "|---|---|---|---|",
          `| idle | ${r.flood.idle.requests} | ${r.flood.idle.p50} | ${r.flood.idle.p99} |`,
          `| during flood | ${r.flood.flood.requests} | ${r.flood.flood.p50} | ${r.flood.flood.p99} |`,
          "",
          `p99 during / idle: **${r.flood.p99Ratio}×**. Flood requests: ${r.flood.floodRequests}; alias queries answered: ${r.flood.aliasQueries.ok} (p50 ${r.flood.aliasQueries.p50} ms, p99 ${r.flood.aliasQueries.p99} ms), refused: ${JSON.stringify(r.flood.aliasQueries.refused)}.`,
        ].join("\n")
      : "not run (needs 2 tenants and a launched job)",
    "",
    "### Worker kills",
    "",
    ...(r.kills.length === 0
      ? ["none"]
      : [
          "| at s | role | pid | children | trainers | alive 5 s later | restart s |",
          "|---|---|---|---|---|---|---|",
          ...r.kills.map(
            (k) =>
              `| ${k.t} | ${k.role} | ${k.pid} | ${k.children} | ${k.trainers} | ${k.orphansAfter5s} | ${k.restartSeconds} |`,
          ),
        ]),
    "",
    "### RSS (MB; postgres = postmaster + backends, shared memory counted in each)",
    "",
    "| process | first | max | last |",
    "|---|---|---|---|",
    ...r.rss.summary.map((s) => `| ${s.role} | ${s.first} | ${s.max} | ${s.last} |`),
    "",
    "### Invariants at the end",
    "",
    `${r.invariants.counts.datasets} datasets, ${r.invariants.counts.jobs} jobs, ${r.invariants.counts.objects} objects (${r.invariants.counts.referenced} required by the database).`,
    "",
    r.invariants.violations.length === 0
      ? "Violations: none."
      : `Violations (${r.invariants.violations.length}):`,
    ...r.invariants.violations.map((v) => `- ${v.kind}: \`${v.subject}\` (${v.detail})`),
    "",
  ];
  return `${lines.join("\n")}\n`;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
