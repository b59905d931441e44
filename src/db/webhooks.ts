import { type Queryable, sql } from "./sql.ts";

/**
 * SQL for webhooks and their outbox. `recordEvent` is called inside the transaction of the state
 * change it reports, so a delivery exists exactly when the change committed; a NOTIFY on
 * WEBHOOK_CHANNEL (delivered at commit) wakes the dispatcher.
 */

export const WEBHOOK_CHANNEL = "trapdoor_webhooks";
/** The notification payload: "the outbox has new rows". */
export const OUTBOX_KEY = "outbox";

export type WebhookEvent =
  | "JOB_SUCCEEDED"
  | "JOB_FAILED"
  | "JOB_CANCELLED"
  | "DATASET_READY"
  | "DATASET_FAILED"
  | "STUDY_DONE";

export interface WebhookRow {
  id: string;
  tenant_id: string;
  url: string;
  events: WebhookEvent[];
  secret_ciphertext: string;
  previous_secret_ciphertext: string | null;
  previous_secret_expires_at: Date | null;
  secret_rotated_at: Date | null;
  created_at: Date;
  deleted_at: Date | null;
}

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  tenant_id: string;
  event: WebhookEvent;
  payload: Record<string, unknown>;
  status: "PENDING" | "DELIVERED" | "FAILED";
  attempts: number;
  last_error: string | null;
  last_status_code: number | null;
  queued_at: Date | null;
  delivered_at: Date | null;
  created_at: Date;
}

/** One delivery per live webhook of the tenant that listens to `event`. */
export async function recordEvent(
  tx: Queryable,
  tenantId: string,
  event: WebhookEvent,
  data: Record<string, unknown>,
): Promise<void> {
  await sql(
    tx,
    `WITH added AS (
       INSERT INTO webhook_deliveries (webhook_id, tenant_id, event, payload)
       SELECT id, tenant_id, $2, $3 FROM webhooks WHERE tenant_id = $1 AND $2 = ANY(events) AND deleted_at IS NULL
       RETURNING id)
     SELECT pg_notify($4, $5) FROM added LIMIT 1`,
    [tenantId, event, JSON.stringify(data), WEBHOOK_CHANNEL, OUTBOX_KEY],
  );
}

export async function insertWebhook(
  db: Queryable,
  row: { tenantId: string; url: string; events: WebhookEvent[]; secretCiphertext: string },
): Promise<WebhookRow> {
  const rows = await sql<WebhookRow>(
    db,
    "INSERT INTO webhooks (tenant_id, url, events, secret_ciphertext) VALUES ($1, $2, $3, $4) RETURNING *",
    [row.tenantId, row.url, row.events, row.secretCiphertext],
  );
  return rows[0] as WebhookRow;
}

export async function getWebhook(
  db: Queryable,
  tenantId: string | null,
  id: string,
): Promise<WebhookRow | null> {
  const rows = await sql<WebhookRow>(
    db,
    "SELECT * FROM webhooks WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND deleted_at IS NULL",
    [id, tenantId],
  );
  return rows[0] ?? null;
}

export function listWebhooks(db: Queryable, tenantId: string): Promise<WebhookRow[]> {
  return sql<WebhookRow>(
    db,
    "SELECT * FROM webhooks WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
    [tenantId],
  );
}

export async function countWebhooks(db: Queryable, tenantId: string): Promise<number> {
  const rows = await sql<{ n: string }>(
    db,
    "SELECT count(*) AS n FROM webhooks WHERE tenant_id = $1 AND deleted_at IS NULL",
    [tenantId],
  );
  return Number(rows[0]?.n ?? 0);
}

/** The new secret signs from now; the old one also signs until `graceSeconds` from now. */
export async function rotateSecret(
  db: Queryable,
  id: string,
  secretCiphertext: string,
  graceSeconds: number,
) {
  const rows = await sql<WebhookRow>(
    db,
    `UPDATE webhooks SET previous_secret_ciphertext = secret_ciphertext, secret_ciphertext = $2,
       previous_secret_expires_at = now() + make_interval(secs => $3), secret_rotated_at = now()
     WHERE id = $1 AND deleted_at IS NULL RETURNING *`,
    [id, secretCiphertext, graceSeconds],
  );
  return rows[0] ?? null;
}

export async function deleteWebhook(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    "UPDATE webhooks SET deleted_at = now() WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING id",
    [id, tenantId],
  );
  return rows.length > 0;
}

/** Newest first; `first` + 1 rows. */
export function deliveriesOf(
  db: Queryable,
  webhookId: string,
  first: number,
  after?: { createdAt: string; id: string },
): Promise<DeliveryRow[]> {
  return sql<DeliveryRow>(
    db,
    `SELECT * FROM webhook_deliveries WHERE webhook_id = $1
       AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
     ORDER BY created_at DESC, id DESC LIMIT $4`,
    [webhookId, after?.createdAt ?? null, after?.id ?? null, first + 1],
  );
}

/** Deliveries not yet handed to the queue, oldest first, locked for this relay. */
export function claimUnqueued(db: Queryable, limit: number): Promise<{ id: string }[]> {
  return sql(
    db,
    `UPDATE webhook_deliveries SET queued_at = now() WHERE id IN (
       SELECT id FROM webhook_deliveries WHERE queued_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING id`,
    [limit],
  );
}

/** Hand a delivery back to the relay (its queue message could not be sent). */
export async function unqueue(db: Queryable, id: string): Promise<void> {
  await sql(db, "UPDATE webhook_deliveries SET queued_at = NULL WHERE id = $1", [id]);
}

export async function deliveryById(db: Queryable, id: string): Promise<DeliveryRow | null> {
  const rows = await sql<DeliveryRow>(db, "SELECT * FROM webhook_deliveries WHERE id = $1", [id]);
  return rows[0] ?? null;
}

export async function recordAttempt(
  db: Queryable,
  id: string,
  outcome: { status: DeliveryRow["status"]; error: string | null; statusCode: number | null },
): Promise<void> {
  await sql(
    db,
    `UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, last_error = $3, last_status_code = $4,
       delivered_at = CASE WHEN $2 = 'DELIVERED' THEN now() ELSE delivered_at END
     WHERE id = $1 AND status = 'PENDING'`,
    [id, outcome.status, outcome.error, outcome.statusCode],
  );
}

/** Deletes DELIVERED and FAILED deliveries older than `days`; returns how many. */
export async function forgetOldDeliveries(db: Queryable, days: number): Promise<number> {
  const rows = await sql(
    db,
    `DELETE FROM webhook_deliveries WHERE status <> 'PENDING' AND created_at < now() - make_interval(days => $1) RETURNING id`,
    [days],
  );
  return rows.length;
}
