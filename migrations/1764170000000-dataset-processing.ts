import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Dataset ingest and poisoning run on workers through the queue, with the lease rules of training
 * jobs: which attempt holds the dataset, which worker, its last heartbeat. A poisoned TRAIN set
 * records the ASR_TEST set built in the same run.
 */
export class DatasetProcessing1764170000000 implements MigrationInterface {
  name = "DatasetProcessing1764170000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`ALTER TABLE datasets
      ADD COLUMN processing_attempt int NOT NULL DEFAULT 0,
      ADD COLUMN processing_worker text,
      ADD COLUMN processing_heartbeat_at timestamptz,
      ADD COLUMN asr_dataset_id uuid REFERENCES datasets(id)`);
    await db.query(
      "CREATE INDEX datasets_validating ON datasets (processing_heartbeat_at) WHERE status = 'VALIDATING'",
    );
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("DROP INDEX datasets_validating");
    await db.query(`ALTER TABLE datasets DROP COLUMN asr_dataset_id, DROP COLUMN processing_heartbeat_at,
      DROP COLUMN processing_worker, DROP COLUMN processing_attempt`);
  }
}
