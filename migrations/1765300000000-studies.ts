import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Comparison studies: one launch of methods x seeds on the same data. A study's children are
 * ordinary training jobs (`training_jobs.study_id`); its status is derived from theirs. `report`
 * is the report bundle once built ({key, sizeBytes, sha256}).
 */
export class Studies1765300000000 implements MigrationInterface {
  name = "Studies1765300000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE studies (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      idempotency_key text NOT NULL,
      input_hash text NOT NULL,
      spec jsonb NOT NULL,
      labels jsonb NOT NULL DEFAULT '{}'::jsonb,
      external_id text,
      cancelled_at timestamptz,
      report jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, idempotency_key))`);
    await db.query("CREATE INDEX studies_tenant_created ON studies (tenant_id, created_at DESC, id DESC)");
    await db.query("ALTER TABLE training_jobs ADD COLUMN study_id uuid REFERENCES studies(id) ON DELETE SET NULL");
    await db.query("CREATE INDEX training_jobs_study ON training_jobs (study_id) WHERE study_id IS NOT NULL");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("DROP INDEX training_jobs_study");
    await db.query("ALTER TABLE training_jobs DROP COLUMN study_id");
    await db.query("DROP TABLE studies");
  }
}
