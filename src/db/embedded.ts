import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import pg from "pg";
import { ownDir, type Placement, placeCluster } from "./embedded-placement.ts";

/** A real PostgreSQL under `dataDir`, for `trapdoor start` and the tests when DATABASE_URL is unset. */
export interface EmbeddedDatabase {
  url: string;
  /** Stops the server if this call started it; one already running is left to whoever started it. */
  stop(): Promise<void>;
}

const PASSWORD = "trapdoor";
const urlFor = (port: number) => `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/trapdoor`;
// C messages: readiness is seen in the server's log line.
const ENV = { ...process.env, LC_ALL: undefined, LC_MESSAGES: "C" };

/**
 * A port to listen on later (embedded PostgreSQL, a test's API). Chosen below the kernel's
 * ephemeral range (Linux: 32768-60999) when it can be: a port from inside it (what listen(0)
 * hands out) may be given to one of this process's own outgoing connections before the server
 * binds it, and the listen then fails with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port =
      BELOW_EPHEMERAL.low + Math.floor(Math.random() * (BELOW_EPHEMERAL.high - BELOW_EPHEMERAL.low));
    if (await canListen(port)) return port;
  }
  return listenOnAny();
}

const BELOW_EPHEMERAL = { low: 20000, high: 32768 };

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

function listenOnAny(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPostgres(
  dataDir: string,
  options: { port?: number; log?: (line: string) => void } = {},
): Promise<EmbeddedDatabase> {
  mkdirSync(dataDir, { recursive: true });
  const place = await placeCluster(dataDir);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (place.relocated) log(`embedded PostgreSQL for ${dataDir} lives in ${place.clusterDir}`);
  // Another trapdoor (`start` while `tenant` runs) already serves this cluster: a second server
  // would not start, so connect to the first and leave it running.
  const running = runningPort(place.clusterDir);
  if (running) return { url: urlFor(running), stop: async () => {} };
  if (!existsSync(join(place.clusterDir, "PG_VERSION"))) await initdb(place);
  const port = options.port ?? (await freePort());
  const stop = await startServer(place, port);
  try {
    await ensureDatabase(port);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: urlFor(port), stop };
}

/** The port in postmaster.pid (line 4) while its pid (line 1) is alive. */
function runningPort(clusterDir: string): number | undefined {
  let lines: string[];
  try {
    lines = readFileSync(join(clusterDir, "postmaster.pid"), "utf8").split("\n");
  } catch {
    return undefined;
  }
  const [pid, port] = [Number(lines[0]), Number(lines[3])];
  if (!(pid > 0 && port > 0)) return undefined;
  try {
    process.kill(pid, 0);
    return port;
  } catch (error) {
    // EPERM: alive, but another user's (the postgres user's, as root runs it).
    return (error as NodeJS.ErrnoException).code === "EPERM" ? port : undefined;
  }
}

async function initdb({ clusterDir, binDir, account }: Placement): Promise<void> {
  ownDir(clusterDir, account);
  const pwfile = join(dirname(clusterDir), `.pwfile-${randomBytes(6).toString("hex")}`);
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  try {
    if (account) chownSync(pwfile, account.uid, account.gid);
    const initdb = spawn(
      join(binDir, "initdb"),
      [
        `--pgdata=${clusterDir}`,
        "--auth=password",
        "--username=postgres",
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--locale=C",
      ],
      { ...account, env: ENV, stdio: ["ignore", "pipe", "pipe"] },
    );
    const output = collect(initdb);
    const code = await new Promise<number | null>((resolve, reject) => {
      initdb.once("error", reject);
      initdb.once("close", resolve);
    });
    if (code !== 0) throw new Error(`initdb ${clusterDir} failed (exit ${code}): ${output().trim()}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
}

/** Starts the server; resolves once it accepts connections, with how to stop it. */
async function startServer({ clusterDir, binDir, account }: Placement, port: number) {
  const server = spawn(join(binDir, "postgres"), ["-D", clusterDir, "-p", String(port)], {
    ...account,
    env: ENV,
    stdio: ["ignore", "ignore", "pipe"],
  });
  // A server left behind would hold the cluster: stop it when this process exits.
  const stopOnExit = () => server.kill("SIGINT");
  process.on("exit", stopOnExit);
  const exited = new Promise<void>((resolve) =>
    server.once("close", () => {
      process.off("exit", stopOnExit);
      resolve();
    }),
  );
  const output = collect(server);
  await new Promise<void>((resolve, reject) => {
    server.stderr?.on("data", () => {
      if (output().includes("ready to accept connections")) resolve();
    });
    server.once("error", reject);
    exited.then(() =>
      reject(new Error(`PostgreSQL ${clusterDir} exited while starting: ${output().trim()}`)),
    );
  });
  return async () => {
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGINT");
    await exited;
  };
}

/** Collects a child's output up to 64 KiB (the rest is drained: a full pipe would block it). */
function collect(child: ChildProcess): () => string {
  let text = "";
  const add = (chunk: Buffer) => {
    if (text.length < 65_536) text += chunk;
  };
  child.stdout?.on("data", add);
  child.stderr?.on("data", add);
  return () => text;
}

/** The `trapdoor` database, created on first start (and after a first start cut short). */
async function ensureDatabase(port: number): Promise<void> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password: PASSWORD });
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = 'trapdoor'");
    if (found.rowCount === 0) await client.query("CREATE DATABASE trapdoor");
  } finally {
    await client.end();
  }
}
