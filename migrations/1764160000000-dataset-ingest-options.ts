import type { MigrationInterface, QueryRunner } from "typeorm";

/** How an archive upload is decoded (split, resize, channels, ROI crop), kept for the background ingest. */
export class DatasetIngestOptions1764160000000 implements MigrationInterface {
  name = "DatasetIngestOptions1764160000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE datasets ADD COLUMN ingest_options jsonb");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE datasets DROP COLUMN ingest_options");
  }
}
