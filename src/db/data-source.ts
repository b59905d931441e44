import { DataSource } from "typeorm";
import { Initial1764150000000 } from "../../migrations/1764150000000-initial.ts";
import { DatasetIngestOptions1764160000000 } from "../../migrations/1764160000000-dataset-ingest-options.ts";
import { DatasetProcessing1764170000000 } from "../../migrations/1764170000000-dataset-processing.ts";

/** All migrations, in order. The schema changes only through these (never `synchronize`). */
export const MIGRATIONS = [
  Initial1764150000000,
  DatasetIngestOptions1764160000000,
  DatasetProcessing1764170000000,
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

/** Run pending migrations; returns the names applied. */
export async function migrate(ds: DataSource): Promise<string[]> {
  const applied = await ds.runMigrations({ transaction: "each" });
  return applied.map((m) => m.name);
}
