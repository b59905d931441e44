import { inspect, parseArgs } from "node:util";
import { EXIT_CODES_HELP, ExitCode } from "../client/exit-codes.ts";

const USAGE = `usage: trapdoor <command> [options]
server:
  start            API + worker + embedded Postgres and local store (the newcomer default)
  serve            API only
  worker [--queue Q] [--once]   worker only (--once: one training job, then exit)
  migrate [--revert | --check]   apply (or revert the last) database migration; --check exits 1
                   while migrations are pending (an initContainer waits on it)
  tenant NAME      create a tenant and print its first API key
  quota TENANT_ID [--bytes N] [--datasets N] [--live-jobs N]
                   set a tenant's own quota (else the TRAPDOOR_TENANT_MAX_* defaults) and print it
    (--port P, --data-dir DIR)
client (talks to a running API; \`trapdoor login\` first):
  login --endpoint URL --key KEY
  datasets upload FILE... --role ROLE --format FORMAT | datasets list
  jobs launch | watch ID | list | download ID
  trapdoor <client command> --help for the flags; every client command takes --json
  ${EXIT_CODES_HELP}`;

const CLIENT_COMMANDS = new Set(["login", "datasets", "jobs", "studies"]);
/** `migrate --check`: the schema is behind this version (wait, or run `trapdoor migrate`). */
const MIGRATIONS_PENDING = 1;

async function main(argv: string[]): Promise<number> {
  // Client commands load only the client: no database, ORM or server modules to start up.
  if (CLIENT_COMMANDS.has(argv[0] ?? "")) {
    const { runClient } = await import("../client/index.ts");
    return runClient(argv);
  }
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: "string" },
      "data-dir": { type: "string" },
      revert: { type: "boolean" },
      check: { type: "boolean" },
      once: { type: "boolean" },
      queue: { type: "string" },
      bytes: { type: "string" },
      datasets: { type: "string" },
      "live-jobs": { type: "string" },
      help: { type: "boolean" },
    },
  });
  const [command, ...rest] = positionals;
  if (!command || values.help) {
    console.log(USAGE);
    return command ? ExitCode.OK : ExitCode.USAGE;
  }
  const { loadConfig } = await import("../config.ts");
  // --queue overrides TRAPDOOR_WORKER_QUEUES (and is checked the same way).
  const env = values.queue ? { ...process.env, TRAPDOOR_WORKER_QUEUES: values.queue } : process.env;
  const loaded = loadConfig(env, {
    port: values.port ? Number(values.port) : undefined,
    dataDir: values["data-dir"],
  });
  const config = values.once ? { ...loaded, worker: { ...loaded.worker, once: true } } : loaded;
  if (command === "start" || command === "serve" || command === "worker") {
    const { startApp } = await import("../main.ts");
    const app = await startApp(config, { api: command !== "worker", worker: command !== "serve" });
    // Listen for the stop signals before saying we are up: whoever waits for these lines may
    // send SIGTERM at once.
    const stopped = new Promise<void>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
    });
    const log = app.log;
    if (app.url) log.info(`trapdoor API on ${app.url}/graphql`);
    if (app.url)
      log.info(
        app.consoleUrl ? `web console on ${app.consoleUrl}` : "web console not built (make build builds it)",
      );
    if (app.worker)
      log.info(`worker ${app.worker.runner.name} serving queues: ${app.worker.queues.join(", ")}`);
    if (app.firstApiKey && command !== "worker") log.info(`API key: ${app.firstApiKey}`);
    if (app.worker?.done) {
      const why = await Promise.race([stopped.then(() => "stopped" as const), app.worker.done]);
      if (why !== "stopped")
        log.info(`worker --once: ${why === "idle" ? "no job came; exiting" : "job done; exiting"}`);
      await app.stop();
      return ExitCode.OK;
    }
    await stopped;
    await app.stop();
    return ExitCode.OK;
  }
  if (command === "migrate" || command === "tenant" || command === "quota") {
    const { createDataSource, migrate, migrationsPending } = await import("../db/data-source.ts");
    const { createApiKey, createTenant } = await import("../db/tenants.ts");
    // Connects to the cluster of a `trapdoor start` running on this data directory, if any. Logs to
    // stderr: stdout carries the tenant's key.
    const embedded = config.databaseUrl
      ? null
      : await (await import("../db/embedded.ts")).startEmbeddedPostgres(config.dataDir, {
          log: (line) => console.error(line),
        });
    const db = createDataSource(config.databaseUrl ?? (embedded?.url as string));
    await db.initialize();
    try {
      if (command === "migrate") {
        if (values.check) {
          const pending = await migrationsPending(db);
          console.log(pending ? "migrations are pending" : "database is up to date");
          return pending ? MIGRATIONS_PENDING : ExitCode.OK;
        }
        if (values.revert) {
          await db.undoLastMigration({ transaction: "each" });
          console.log("reverted the last migration");
        } else {
          const applied = await migrate(db);
          console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
        }
      } else if (command === "quota") {
        await setTenantQuota(db, config, rest[0], values);
      } else {
        const { checkString, INPUT_LIMITS } = await import("../input-limits.ts");
        const name = rest[0];
        if (!name) throw new Error("tenant needs a NAME");
        await migrate(db);
        const tenant = await createTenant(db, checkString(name, "NAME", INPUT_LIMITS.tenantNameChars));
        const key = await createApiKey(db, tenant.id, "first key");
        console.log(`tenant ${tenant.id}\nAPI key: ${key.key}`);
      }
    } finally {
      await db.destroy();
      await embedded?.stop();
    }
    return ExitCode.OK;
  }
  console.error(`unknown command ${command}\n${USAGE}`);
  return ExitCode.USAGE;
}

/** `trapdoor quota TENANT_ID --bytes N --datasets N --live-jobs N`: a tenant's own quota, then the effective one. */
async function setTenantQuota(
  db: import("typeorm").DataSource,
  config: import("../config.ts").Config,
  tenantId: string | undefined,
  values: { bytes?: string; datasets?: string; "live-jobs"?: string },
): Promise<void> {
  const { parseId } = await import("../input-limits.ts");
  const { QuotaService, quotaDefaults } = await import("../tenants/quota.ts");
  const { setQuotaOverrides } = await import("../db/usage.ts");
  if (!tenantId) throw new Error("quota needs a TENANT_ID");
  const id = parseId("tenant", tenantId);
  if ((await db.query("SELECT 1 FROM tenants WHERE id = $1", [id])).length === 0)
    throw new Error(`tenant ${id} does not exist`);
  const count = (flag: string, value: string | undefined) => {
    if (value === undefined) return null;
    if (!/^\d{1,18}$/.test(value)) throw new Error(`--${flag} must be a non-negative integer, got ${value}`);
    return Number(value);
  };
  await setQuotaOverrides(db, id, {
    bytes: count("bytes", values.bytes),
    datasets: count("datasets", values.datasets),
    liveJobs: count("live-jobs", values["live-jobs"]),
  });
  const quotas = new QuotaService(db, quotaDefaults(config.limits));
  const [quota, usage] = await Promise.all([quotas.quota(id), quotas.usage(id)]);
  console.log(`tenant ${id}\nquota: ${JSON.stringify(quota)}\nusage: ${JSON.stringify(usage)}`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    // A library may reject with anything (even undefined): say which command failed.
    console.error(
      error instanceof Error ? error.message : `trapdoor failed without an error message: ${inspect(error)}`,
    );
    process.exit(1);
  },
);
