import { type Queryable, sql } from "./sql.ts";

/** The audit log: who (which key) did what to which object, when. Append-only. */

export interface AuditRow {
  id: string;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  details: Record<string, unknown> | null;
  at: Date;
}

export interface NewAuditEvent {
  tenantId: string;
  actor: string;
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  details?: Record<string, unknown> | null;
}

export async function insertAuditEvent(db: Queryable, e: NewAuditEvent): Promise<void> {
  await sql(
    db,
    "INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details) VALUES ($1, $2, $3, $4, $5, $6)",
    [
      e.tenantId,
      e.actor,
      e.action,
      e.targetType ?? null,
      e.targetId ?? null,
      e.details ? JSON.stringify(e.details) : null,
    ],
  );
}

/** Newest first; `before` is the id of the last event of the previous page. */
export function auditEventsOf(
  db: Queryable,
  tenantId: string,
  first: number,
  before?: string,
): Promise<AuditRow[]> {
  return sql<AuditRow>(
    db,
    `SELECT id::text AS id, actor, action, target_type, target_id, details, at FROM audit_events
     WHERE tenant_id = $1 AND ($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT $2`,
    [tenantId, first + 1, before ?? null],
  );
}
