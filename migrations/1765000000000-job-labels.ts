import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * A platform's own handles on a job: `labels` (string → string) and `externalId`, both found
 * again through `jobs(filter: ...)`: containment on labels (GIN, jsonb_path_ops) and equality on
 * the external id within a tenant.
 */
export class JobLabels1765000000000 implements MigrationInterface {
  name = "JobLabels1765000000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(
      "ALTER TABLE training_jobs ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb, ADD COLUMN external_id text",
    );
    await db.query("CREATE INDEX training_jobs_labels ON training_jobs USING gin (labels jsonb_path_ops)");
    await db.query(
      "CREATE INDEX training_jobs_external_id ON training_jobs (tenant_id, external_id) WHERE external_id IS NOT NULL",
    );
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("DROP INDEX training_jobs_external_id");
    await db.query("DROP INDEX training_jobs_labels");
    await db.query("ALTER TABLE training_jobs DROP COLUMN external_id, DROP COLUMN labels");
  }
}
