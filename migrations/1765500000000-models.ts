import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Models their users bring: a safetensors file of a catalog architecture, uploaded like a
 * dataset and checked on a worker. A job may start from one (`model_id`) or from an earlier
 * job's model (`init_job_id`): post-training defenses and EVALUATE.
 */
export class Models1765500000000 implements MigrationInterface {
  name = "Models1765500000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE models (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      architecture text NOT NULL,
      height integer NOT NULL,
      width integer NOT NULL,
      channels integer NOT NULL,
      num_classes integer NOT NULL,
      class_names jsonb,
      dtype text NOT NULL,
      stem_end_block integer NOT NULL DEFAULT 5,
      preprocessing jsonb,
      size_bytes bigint NOT NULL,
      sha256 text NOT NULL,
      storage_key text NOT NULL,
      status text NOT NULL CHECK (status IN ('AWAITING_UPLOAD', 'VALIDATING', 'READY', 'FAILED')),
      failure_reason text,
      tensors integer,
      parameters bigint,
      processing_attempt integer NOT NULL DEFAULT 0,
      heartbeat_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      deleted_at timestamptz)`);
    await db.query("CREATE INDEX models_tenant_created ON models (tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL");
    await db.query(
      "ALTER TABLE training_jobs ADD COLUMN model_id uuid REFERENCES models(id), ADD COLUMN init_job_id uuid REFERENCES training_jobs(id) ON DELETE SET NULL",
    );
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE training_jobs DROP COLUMN init_job_id, DROP COLUMN model_id");
    await db.query("DROP TABLE models");
  }
}
