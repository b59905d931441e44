import type { MigrationInterface, QueryRunner } from "typeorm";

/** Tenants, API keys, datasets, training jobs with their transitions, metrics and artifacts. */
export class Initial1764150000000 implements MigrationInterface {
  name = "Initial1764150000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE tenants (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE TABLE api_keys (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      key_hash text NOT NULL UNIQUE,
      prefix text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz)`);
    await db.query(`CREATE TABLE datasets (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      name text NOT NULL,
      role text NOT NULL CHECK (role IN ('TRAIN','HOLDOUT','TEST','ASR_TEST')),
      format text NOT NULL,
      status text NOT NULL CHECK (status IN ('AWAITING_UPLOAD','VALIDATING','READY','FAILED')),
      failure_reason text,
      parts jsonb NOT NULL,
      size_bytes bigint NOT NULL,
      count integer, height integer, width integer, channels integer, num_classes integer,
      class_names jsonb, class_histogram jsonb, manifest jsonb, poison jsonb,
      source_dataset_id uuid REFERENCES datasets(id) ON DELETE SET NULL,
      deleted_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE INDEX datasets_tenant_created ON datasets (tenant_id, created_at DESC, id DESC)`);
    await db.query(`CREATE TABLE training_jobs (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      idempotency_key text NOT NULL,
      input_hash text NOT NULL,
      method text NOT NULL,
      architecture text NOT NULL,
      status text NOT NULL,
      train_dataset_id uuid NOT NULL REFERENCES datasets(id),
      holdout_dataset_id uuid NOT NULL REFERENCES datasets(id),
      test_dataset_id uuid NOT NULL REFERENCES datasets(id),
      asr_test_dataset_id uuid REFERENCES datasets(id),
      attack jsonb, target integer, seed integer NOT NULL,
      hyperparameters jsonb NOT NULL,
      queue text NOT NULL,
      attempt integer NOT NULL DEFAULT 0,
      max_attempts integer NOT NULL DEFAULT 3,
      worker text, device jsonb, progress jsonb, metrics jsonb, error jsonb,
      checkpoint_key text,
      log_tail jsonb NOT NULL DEFAULT '[]',
      heartbeat_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (tenant_id, idempotency_key))`);
    await db.query(`CREATE INDEX training_jobs_tenant_created ON training_jobs (tenant_id, created_at DESC, id DESC)`);
    await db.query(`CREATE INDEX training_jobs_live ON training_jobs (status) WHERE status IN ('STARTING','RUNNING','UPLOADING','CANCELLING')`);
    await db.query(`CREATE TABLE job_transitions (
      id bigserial PRIMARY KEY,
      job_id uuid NOT NULL REFERENCES training_jobs(id) ON DELETE CASCADE,
      from_status text, to_status text NOT NULL, reason text,
      at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    await db.query(`CREATE INDEX job_transitions_job ON job_transitions (job_id, id)`);
    await db.query(`CREATE TABLE job_metrics (
      id bigserial PRIMARY KEY,
      job_id uuid NOT NULL REFERENCES training_jobs(id) ON DELETE CASCADE,
      attempt integer NOT NULL, stage text NOT NULL, epoch integer, name text NOT NULL, value double precision)`);
    await db.query(`CREATE INDEX job_metrics_job ON job_metrics (job_id, id)`);
    await db.query(`CREATE TABLE artifacts (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      job_id uuid NOT NULL REFERENCES training_jobs(id) ON DELETE CASCADE,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      kind text NOT NULL, format text NOT NULL, file_name text NOT NULL,
      storage_key text NOT NULL, size_bytes bigint NOT NULL, sha256 text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (job_id, file_name))`);
  }

  async down(db: QueryRunner): Promise<void> {
    for (const table of ["artifacts", "job_metrics", "job_transitions", "training_jobs", "datasets", "api_keys", "tenants"]) {
      await db.query(`DROP TABLE ${table}`);
    }
  }
}
