import { parseArgs } from "node:util";
import { loadConfig } from "../config.ts";
import { createDataSource, migrate } from "../db/data-source.ts";
import { startEmbeddedPostgres } from "../db/embedded.ts";
import { createApiKey, createTenant } from "../db/tenants.ts";
import { startApp } from "../main.ts";

const USAGE = `usage: trapdoor <command> [--port P] [--data-dir DIR]
  start            API + worker + embedded Postgres and local store (the newcomer default)
  serve            API only
  worker           worker only
  migrate [--revert]   apply (or revert the last) database migration
  tenant NAME      create a tenant and print its first API key`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: "string" },
      "data-dir": { type: "string" },
      revert: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  const [command, ...rest] = positionals;
  if (!command || values.help) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const config = loadConfig(process.env, {
    port: values.port ? Number(values.port) : undefined,
    dataDir: values["data-dir"],
  });
  if (command === "start" || command === "serve" || command === "worker") {
    const app = await startApp(config, { api: command !== "worker", worker: command !== "serve" });
    if (app.url) console.log(`trapdoor API on ${app.url}/graphql`);
    if (app.worker)
      console.log(`worker ${app.worker.runner.name} serving queues: ${app.worker.queues.join(", ")}`);
    if (app.firstApiKey && command !== "worker") console.log(`API key: ${app.firstApiKey}`);
    await new Promise<void>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
    });
    await app.stop();
    return 0;
  }
  if (command === "migrate" || command === "tenant") {
    const embedded = config.databaseUrl ? null : await startEmbeddedPostgres(config.dataDir);
    const db = createDataSource(config.databaseUrl ?? (embedded?.url as string));
    await db.initialize();
    try {
      if (command === "migrate") {
        if (values.revert) {
          await db.undoLastMigration({ transaction: "each" });
          console.log("reverted the last migration");
        } else {
          const applied = await migrate(db);
          console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
        }
      } else {
        const name = rest[0];
        if (!name) throw new Error("tenant needs a NAME");
        await migrate(db);
        const tenant = await createTenant(db, name);
        const key = await createApiKey(db, tenant.id, "first key");
        console.log(`tenant ${tenant.id}\nAPI key: ${key.key}`);
      }
    } finally {
      await db.destroy();
      await embedded?.stop();
    }
    return 0;
  }
  console.error(`unknown command ${command}\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
