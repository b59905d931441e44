import { DataSource } from "typeorm";
import { Initial1764150000000 } from "../../migrations/1764150000000-initial.ts";
import { DatasetIngestOptions1764160000000 } from "../../migrations/1764160000000-dataset-ingest-options.ts";
import { DatasetProcessing1764170000000 } from "../../migrations/1764170000000-dataset-processing.ts";
import { JobResources1764180000000 } from "../../migrations/1764180000000-job-resources.ts";
import { Hardening1764190000000 } from "../../migrations/1764190000000-hardening.ts";
import { JobLabels1765000000000 } from "../../migrations/1765000000000-job-labels.ts";
import { JobHealth1765100000000 } from "../../migrations/1765100000000-job-health.ts";
import { DatasetLineage1765200000000 } from "../../migrations/1765200000000-dataset-lineage.ts";
import { Studies1765300000000 } from "../../migrations/1765300000000-studies.ts";
import { Webhooks1765400000000 } from "../../migrations/1765400000000-webhooks.ts";
import { Models1765500000000 } from "../../migrations/1765500000000-models.ts";
import { HealthCalibration1765600000000 } from "../../migrations/1765600000000-health-calibration.ts";

/** All migrations, in order. The schema changes only through these (never `synchronize`). */
export const MIGRATIONS = [
  Initial1764150000000,
  DatasetIngestOptions1764160000000,
  DatasetProcessing1764170000000,
  JobResources1764180000000,
  Hardening1764190000000,
  JobLabels1765000000000,
  JobHealth1765100000000,
  DatasetLineage1765200000000,
  Studies1765300000000,
  Webhooks1765400000000,
  Models1765500000000,
  HealthCalibration1765600000000,
];

export function createDataSource(databaseUrl: string): DataSource {
  return new DataSource({
    type: "postgres",
    url: databaseUrl,
    migrations: MIGRATIONS,
    migrationsTableName: "trapdoor_migrations",
    synchronize: false,
    logging: false,
    extra: { max: 10 },
  });
}

/** The advisory lock every migrating process takes, so replicas and the migration Job never race. */
const MIGRATION_LOCK = 727_001;

/**
 * Run pending migrations under a PostgreSQL advisory lock (several processes may start at once:
 * the second waits, then finds nothing to do); returns the names this call applied.
 */
export async function migrate(ds: DataSource): Promise<string[]> {
  const lock = ds.createQueryRunner();
  await lock.connect();
  try {
    await lock.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    const applied = await ds.runMigrations({ transaction: "each" });
    return applied.map((m) => m.name);
  } finally {
    await lock.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
    await lock.release();
  }
}

/** Whether migrations are pending (the schema is behind this code). */
export function migrationsPending(ds: DataSource): Promise<boolean> {
  return ds.showMigrations();
}
