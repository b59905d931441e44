/**
 * GraphQL read latency against a reference. Starts trapdoor's API on embedded Postgres (as the
 * tests do), seeds one tenant with --jobs jobs, and measures with autocannon (--connections
 * concurrent connections for --duration seconds each, after a short warm-up):
 *
 *   - `job(id)` and `jobs(first: 50)` through the GraphQL API (auth, Apollo, resolvers, TypeORM);
 *   - the same reads from a plain express handler on another port: the same SQL statements
 *     (API-key lookup, cached 30 s as the API caches it, then the tenant-scoped job read) through
 *     `pg`, the same fields as JSON.
 *
 * Prints a markdown table: p50 / p99 latency, requests/s, and the API's ratio to the reference.
 *
 *   node --import tsx bench/api/latency.ts [--connections 32] [--duration 10] [--jobs 200] [--rate-limit N]
 *                                          [--rate 1000] [--only job]
 *
 * With --rate R, each run offers R requests/s at fixed intervals (open-loop.ts, at most
 * --connections connections; latency counted from each request's due time) instead of running
 * closed-loop: the p99 at a fixed arrival rate, not at saturation.
 *
 * Not part of `make test`. The load generator runs in a worker thread of this process, so on a
 * small machine it shares the CPUs with both servers and Postgres, equally for both sides.
 */

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { Session } from "node:inspector";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import express from "express";
import pg from "pg";
import { freePort } from "../../src/db/embedded.ts";
import { removeDataDir } from "../../tests/helpers/app.ts";
import { openLoop } from "./open-loop.ts";
import { seedJobs, startBenchApi } from "./setup.ts";

const { values: args } = parseArgs({
  options: {
    connections: { type: "string", default: "32" },
    duration: { type: "string", default: "10" },
    jobs: { type: "string", default: "200" },
    warmup: { type: "string", default: "2" },
    // Requests per tenant per minute (TRAPDOOR_RATE_LIMIT; 0 turns the limiter off). The default
    // never refuses here, so the limiter's cost is in the figures without its refusals.
    "rate-limit": { type: "string", default: "1000000000" },
    rate: { type: "string" },
    only: { type: "string" },
    // `job(id)` through the API alone at each of these connection counts (closed loop), e.g.
    // 1,2,5,10,20,50,100,200; with --json FILE the figures are also written there.
    sweep: { type: "string" },
    json: { type: "string" },
    // Writes a CPU profile of this process (the API's thread) during each API run into this folder.
    profile: { type: "string" },
  },
});
const RATE = args.rate === undefined ? undefined : Number(args.rate);
const CONNECTIONS = Number(args.connections);
const DURATION = Number(args.duration);
const JOBS = Number(args.jobs);
const WARMUP = Number(args.warmup);
const PAGE = 50;

const JOB_FIELDS = `id method architecture status attempt progress { stage epoch epochs fraction imagesPerSecond }
  metrics { asr ca mse } createdAt updatedAt`;
const JOB_QUERY = `query($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`;
const JOBS_QUERY = `query { jobs(first: ${PAGE}) { edges { cursor node { ${JOB_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;
const DATASET_QUERY = `query($id: ID!) { dataset(id: $id) { id name role format status sizeBytes count height width channels
  numClasses classNames createdAt } }`;

/** The statements src/db/tenants.ts (tenantForKey) and src/db/jobs.ts (getJob, listJobs) run. */
const SQL = {
  tenantForKey: `SELECT t.id, t.name, k.id AS "keyId" FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())`,
  job: "SELECT * FROM training_jobs WHERE id = $1 AND tenant_id = $2",
  jobs: "SELECT * FROM training_jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
  dataset: `SELECT id, tenant_id, name, role, format, status, failure_reason, parts, size_bytes, count, height, width,
     channels, num_classes, class_names, class_histogram, manifest, poison, ingest_options, processing_attempt,
     processing_worker, processing_heartbeat_at, source_dataset_id, asr_dataset_id, created_at
     FROM datasets WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL`,
};

type Row = Record<string, unknown> & { id: string; created_at: Date; updated_at: Date };

/** A job row as the GraphQL query above shapes it, so both servers send comparable JSON. */
function shape(row: Row) {
  const metrics = row.metrics as Record<string, number | null> | null;
  return {
    id: row.id,
    method: row.method,
    architecture: row.architecture,
    status: row.status,
    attempt: row.attempt,
    progress: row.progress,
    metrics: metrics ? { asr: metrics.asr ?? null, ca: metrics.ca ?? null, mse: metrics.mse ?? null } : null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

const cursor = (row: Row) =>
  Buffer.from(JSON.stringify([row.created_at.toISOString(), row.id])).toString("base64url");

/** The reference: express + pg, one pool as large as the API's (10), same reads, same JSON. */
async function startReference(databaseUrl: string): Promise<{ url: string; stop(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  const app = express();
  // Handlers still running when the load generator hangs up must finish before the pool ends.
  let inFlight = 0;
  const tracked =
    (handler: (req: express.Request, res: express.Response) => Promise<void>) =>
    async (req: express.Request, res: express.Response) => {
      inFlight++;
      try {
        await handler(req, res);
      } finally {
        inFlight--;
      }
    };
  // The same key cache the API has (30 s; the API also forgets revoked keys at once).
  const keys = new Map<string, { tenant: { id: string }; until: number }>();
  const tenantOf = async (authorization: string | undefined) => {
    const key = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1] ?? "";
    const hash = createHash("sha256").update(key).digest("hex");
    const cached = keys.get(hash);
    if (cached && cached.until > Date.now()) return cached.tenant;
    const tenant = (await pool.query(SQL.tenantForKey, [hash])).rows[0] as { id: string } | undefined;
    if (tenant) keys.set(hash, { tenant, until: Date.now() + 30_000 });
    return tenant;
  };
  app.get(
    "/job/:id",
    tracked(async (req, res) => {
      const tenant = await tenantOf(req.headers.authorization);
      if (!tenant) return void res.status(401).json({ error: "unauthenticated" });
      const row = (await pool.query(SQL.job, [req.params.id, tenant.id])).rows[0] as Row | undefined;
      res.json({ data: { job: row ? shape(row) : null } });
    }),
  );
  app.get(
    "/dataset/:id",
    tracked(async (req, res) => {
      const tenant = await tenantOf(req.headers.authorization);
      if (!tenant) return void res.status(401).json({ error: "unauthenticated" });
      const d = (await pool.query(SQL.dataset, [req.params.id, tenant.id])).rows[0] as Row | undefined;
      const dataset = d && {
        id: d.id,
        name: d.name,
        role: d.role,
        format: d.format,
        status: d.status,
        sizeBytes: Number(d.size_bytes),
        count: d.count,
        height: d.height,
        width: d.width,
        channels: d.channels,
        numClasses: d.num_classes,
        classNames: d.class_names,
        createdAt: d.created_at.toISOString(),
      };
      res.json({ data: { dataset: dataset ?? null } });
    }),
  );
  app.get(
    "/jobs",
    tracked(async (req, res) => {
      const tenant = await tenantOf(req.headers.authorization);
      if (!tenant) return void res.status(401).json({ error: "unauthenticated" });
      const rows = (await pool.query(SQL.jobs, [tenant.id, PAGE + 1])).rows as Row[];
      const page = rows.slice(0, PAGE);
      res.json({
        data: {
          jobs: {
            edges: page.map((row) => ({ cursor: cursor(row), node: shape(row) })),
            pageInfo: {
              hasNextPage: rows.length > PAGE,
              endCursor: page.length ? cursor(page.at(-1) as Row) : null,
            },
          },
        },
      });
    }),
  );
  const port = await freePort();
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(port, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      await pool.end();
    },
  };
}

/** Runs `work` under the V8 profiler when --profile is given; the profile opens in Chrome DevTools. */
async function profiled<T>(name: string, work: () => Promise<T>): Promise<T> {
  if (args.profile === undefined) return work();
  const session = new Session();
  session.connect();
  const post = (method: string) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, (error, result) => (error ? reject(error) : resolve(result))),
    );
  await post("Profiler.enable");
  await post("Profiler.start");
  try {
    return await work();
  } finally {
    const { profile } = (await post("Profiler.stop")) as { profile: unknown };
    mkdirSync(args.profile, { recursive: true });
    const file = join(args.profile, `${name.replace(/\W+/g, "-")}api.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;

interface Measured {
  p50: number;
  p99: number;
  rps: number;
  requests: number;
  bad: number;
}

async function load(opts: {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: string;
  duration: number;
  connections?: number;
}): Promise<Measured> {
  if (RATE !== undefined) {
    const r = await openLoop({ ...opts, rate: RATE, seconds: opts.duration, connections: CONNECTIONS });
    return { p50: round(r.p50), p99: round(r.p99), rps: r.achieved, requests: r.sent, bad: r.failed };
  }
  const result = await autocannon({
    url: opts.url,
    method: opts.method,
    headers: opts.headers,
    body: opts.body,
    connections: opts.connections ?? CONNECTIONS,
    duration: opts.duration,
    workers: 1,
  });
  return {
    p50: result.latency.p50,
    p99: result.latency.p99,
    rps: result.requests.average,
    requests: result.requests.total,
    bad: result.errors + result.timeouts + result.non2xx,
  };
}

/** JSON with object keys sorted (jsonb does not keep the order keys were written in). */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

/** GraphQL and reference must agree before their speed is compared. */
async function sameAnswer(graphql: Response, reference: Response, what: string): Promise<void> {
  const a = canonical(await graphql.json());
  const b = canonical(await reference.json());
  if (a !== b)
    throw new Error(`${what}: the API and the reference disagree\nAPI:       ${a}\nreference: ${b}`);
}

/** `job(id)` at each --sweep connection count: how p99 grows with concurrency. */
async function sweep(url: string, headers: Record<string, string>, body: string): Promise<void> {
  const request = { url: `${url}/graphql`, method: "POST" as const, headers, body };
  await load({ ...request, duration: WARMUP });
  const points: Array<{ connections: number } & Measured> = [];
  for (const connections of (args.sweep as string).split(",").map(Number)) {
    const m = await load({ ...request, duration: DURATION, connections });
    if (m.bad) throw new Error(`${connections} connections: ${m.bad} failed requests`);
    points.push({ connections, ...m });
    process.stderr.write(`${connections} connections: p99 ${m.p99} ms, ${Math.round(m.rps)} req/s\n`);
  }
  if (args.json) writeFileSync(args.json, JSON.stringify(points, null, 1));
  process.stdout.write(
    [
      `\`job(id)\` through the API, closed loop, ${DURATION} s per point; latency in ms.`,
      "",
      "| connections | p50 | p99 | req/s |",
      "|---|---|---|---|",
      ...points.map((p) => `| ${p.connections} | ${p.p50} | ${p.p99} | ${Math.round(p.rps)} |`),
      "",
    ].join("\n"),
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "trapdoor-bench-api-"));
  const app = await startBenchApi(dir, { TRAPDOOR_RATE_LIMIT: args["rate-limit"] });
  const reference = await startReference(app.databaseUrl);
  try {
    const key = app.firstApiKey as string;
    const seeded = await seedJobs(app, JOBS);
    const jobId = seeded.jobs[Math.floor(seeded.jobs.length / 2)] as string;
    const auth = { authorization: `Bearer ${key}` };
    const gqlHeaders = { ...auth, "content-type": "application/json" };
    const cases = [
      {
        name: "job(id)",
        api: { body: JSON.stringify({ query: JOB_QUERY, variables: { id: jobId } }) },
        reference: `${reference.url}/job/${jobId}`,
      },
      {
        name: `jobs(first: ${PAGE})`,
        api: { body: JSON.stringify({ query: JOBS_QUERY }) },
        reference: `${reference.url}/jobs`,
      },
      {
        name: "dataset(id)",
        api: { body: JSON.stringify({ query: DATASET_QUERY, variables: { id: seeded.dataset } }) },
        reference: `${reference.url}/dataset/${seeded.dataset}`,
      },
    ].filter((c) => args.only === undefined || c.name.startsWith(args.only));
    for (const c of cases)
      await sameAnswer(
        await fetch(`${app.url}/graphql`, { method: "POST", headers: gqlHeaders, body: c.api.body }),
        await fetch(c.reference, { headers: auth }),
        c.name,
      );

    if (args.sweep !== undefined) {
      await sweep(app.url as string, gqlHeaders, (cases[0] as { api: { body: string } }).api.body);
      return;
    }
    const rows: string[] = [];
    for (const c of cases) {
      const api = {
        url: `${app.url}/graphql`,
        method: "POST" as const,
        headers: gqlHeaders,
        body: c.api.body,
      };
      const ref = { url: c.reference, method: "GET" as const, headers: auth };
      const offered = RATE === undefined ? "closed loop" : `${RATE} req/s offered`;
      process.stderr.write(
        `${c.name}: warming up, then ${DURATION} s each at ${CONNECTIONS} connections, ${offered}\n`,
      );
      await load({ ...api, duration: WARMUP });
      await load({ ...ref, duration: WARMUP });
      const a = await profiled(c.name, () => load({ ...api, duration: DURATION }));
      const r = await load({ ...ref, duration: DURATION });
      if (a.bad || r.bad) throw new Error(`${c.name}: failed requests (API ${a.bad}, reference ${r.bad})`);
      rows.push(
        `| \`${c.name}\` | GraphQL API | ${a.p50} | ${a.p99} | ${Math.round(a.rps)} | ${(a.p50 / r.p50).toFixed(2)}× | ${(a.p99 / r.p99).toFixed(2)}× | ${(a.rps / r.rps).toFixed(2)}× |`,
        `| \`${c.name}\` | express + pg reference | ${r.p50} | ${r.p99} | ${Math.round(r.rps)} | 1 | 1 | 1 |`,
      );
    }
    process.stdout.write(
      [
        `${JOBS} jobs in one tenant; ${CONNECTIONS} connections, ${DURATION} s per run, ${RATE === undefined ? "closed loop" : `${RATE} req/s offered`}; latency in ms.`,
        "",
        "| query | server | p50 | p99 | req/s | p50 vs ref | p99 vs ref | req/s vs ref |",
        "|---|---|---|---|---|---|---|---|",
        ...rows,
        "",
      ].join("\n"),
    );
  } finally {
    await reference.stop();
    await app.stop();
    removeDataDir(dir); // and the embedded cluster, where it was kept elsewhere (as root)
  }
}

await main();
