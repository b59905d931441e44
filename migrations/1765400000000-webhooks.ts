import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Webhooks: a tenant's endpoints (`webhooks`, secrets encrypted with a key derived from the
 * service's signing secret) and the durable outbox of deliveries (`webhook_deliveries`), written
 * in the same transaction as the state change that causes them. `studies.done_at` marks the
 * moment a study's last job ended (its STUDY_DONE event is written once).
 */
export class Webhooks1765400000000 implements MigrationInterface {
  name = "Webhooks1765400000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE webhooks (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      url text NOT NULL,
      events text[] NOT NULL,
      secret_ciphertext text NOT NULL,
      previous_secret_ciphertext text,
      previous_secret_expires_at timestamptz,
      secret_rotated_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      deleted_at timestamptz)`);
    await db.query("CREATE INDEX webhooks_tenant ON webhooks (tenant_id) WHERE deleted_at IS NULL");
    await db.query(`CREATE TABLE webhook_deliveries (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
      tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
      event text NOT NULL,
      payload jsonb NOT NULL,
      status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
      attempts integer NOT NULL DEFAULT 0,
      last_error text,
      last_status_code integer,
      queued_at timestamptz,
      delivered_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await db.query("CREATE INDEX webhook_deliveries_unqueued ON webhook_deliveries (created_at) WHERE queued_at IS NULL");
    await db.query("CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC)");
    await db.query("ALTER TABLE studies ADD COLUMN done_at timestamptz");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE studies DROP COLUMN done_at");
    await db.query("DROP TABLE webhook_deliveries");
    await db.query("DROP TABLE webhooks");
  }
}
