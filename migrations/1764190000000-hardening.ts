import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Multi-tenant hardening: per-tenant quota overrides, API key expiry and last use, the worker
 * registry, the rate limiter's shared counters, the audit log, and the sweeper's bookkeeping
 * (a deleted dataset's objects purged; a finished job's artifacts expired).
 */
export class Hardening1764190000000 implements MigrationInterface {
  name = "Hardening1764190000000";

  async up(db: QueryRunner): Promise<void> {
    // NULL: the deployment's default (TRAPDOOR_TENANT_MAX_*).
    await db.query(
      "ALTER TABLE tenants ADD COLUMN quota_bytes bigint, ADD COLUMN quota_datasets int, ADD COLUMN quota_live_jobs int",
    );
    await db.query("ALTER TABLE api_keys ADD COLUMN expires_at timestamptz, ADD COLUMN last_used_at timestamptz");
    await db.query("ALTER TABLE datasets ADD COLUMN purged_at timestamptz");
    await db.query(
      "ALTER TABLE training_jobs ADD COLUMN finished_at timestamptz, ADD COLUMN artifacts_expired_at timestamptz",
    );
    await db.query(`UPDATE training_jobs SET finished_at = updated_at
      WHERE status IN ('SUCCEEDED','FAILED','CANCELLED')`);
    await db.query(`CREATE TABLE workers (
      name text PRIMARY KEY,
      queues text[] NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      heartbeat_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE TABLE rate_limit_counts (
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      window_start bigint NOT NULL,
      replica text NOT NULL,
      count int NOT NULL,
      PRIMARY KEY (tenant_id, window_start, replica))`);
    await db.query(`CREATE TABLE audit_events (
      id bigserial PRIMARY KEY,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      actor text NOT NULL,
      action text NOT NULL,
      target_type text,
      target_id text,
      details jsonb,
      at timestamptz NOT NULL DEFAULT now())`);
    await db.query("CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id DESC)");
  }

  async down(db: QueryRunner): Promise<void> {
    for (const table of ["audit_events", "rate_limit_counts", "workers"]) await db.query(`DROP TABLE ${table}`);
    await db.query("ALTER TABLE training_jobs DROP COLUMN artifacts_expired_at, DROP COLUMN finished_at");
    await db.query("ALTER TABLE datasets DROP COLUMN purged_at");
    await db.query("ALTER TABLE api_keys DROP COLUMN last_used_at, DROP COLUMN expires_at");
    await db.query(
      "ALTER TABLE tenants DROP COLUMN quota_live_jobs, DROP COLUMN quota_datasets, DROP COLUMN quota_bytes",
    );
  }
}
