import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * A dataset derived from another by sanitizeDataset records where it came from:
 * `derived_from` = {datasetId, jobId, policy, removedCount (once built), scoresKey}.
 */
export class DatasetLineage1765200000000 implements MigrationInterface {
  name = "DatasetLineage1765200000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE datasets ADD COLUMN derived_from jsonb");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE datasets DROP COLUMN derived_from");
  }
}
