import { type Queryable, sql } from "./sql.ts";

/** SQL for uploaded models. Tenant-scoped reads. */

export type ModelStatus = "AWAITING_UPLOAD" | "VALIDATING" | "READY" | "FAILED";

export interface ModelRow {
  id: string;
  tenant_id: string;
  name: string;
  architecture: string;
  height: number;
  width: number;
  channels: number;
  num_classes: number;
  class_names: string[] | null;
  dtype: "F32" | "F16" | "BF16";
  stem_end_block: number;
  preprocessing: { mean: number[]; std: number[] } | null;
  size_bytes: string;
  sha256: string;
  storage_key: string;
  status: ModelStatus;
  failure_reason: string | null;
  tensors: number | null;
  parameters: string | null;
  /** Which check attempt holds the model (0: none yet), and when its worker last said so. */
  processing_attempt: number;
  heartbeat_at: Date | null;
  created_at: Date;
  deleted_at: Date | null;
}

export type NewModel = Omit<
  ModelRow,
  | "status"
  | "failure_reason"
  | "tensors"
  | "parameters"
  | "created_at"
  | "deleted_at"
  | "size_bytes"
  | "processing_attempt"
  | "heartbeat_at"
> & {
  size_bytes: number;
};

export async function insertModel(db: Queryable, m: NewModel): Promise<ModelRow> {
  const rows = await sql<ModelRow>(
    db,
    `INSERT INTO models (id, tenant_id, name, architecture, height, width, channels, num_classes, class_names, dtype, stem_end_block,
       preprocessing, size_bytes, sha256, storage_key, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'AWAITING_UPLOAD') RETURNING *`,
    [
      m.id,
      m.tenant_id,
      m.name,
      m.architecture,
      m.height,
      m.width,
      m.channels,
      m.num_classes,
      m.class_names ? JSON.stringify(m.class_names) : null,
      m.dtype,
      m.stem_end_block,
      m.preprocessing ? JSON.stringify(m.preprocessing) : null,
      m.size_bytes,
      m.sha256,
      m.storage_key,
    ],
  );
  return rows[0] as ModelRow;
}

export async function getModel(db: Queryable, tenantId: string | null, id: string): Promise<ModelRow | null> {
  const rows = await sql<ModelRow>(
    db,
    "SELECT * FROM models WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND deleted_at IS NULL",
    [id, tenantId],
  );
  return rows[0] ?? null;
}

/** Newest first; `first` + 1 rows. */
export function listModels(
  db: Queryable,
  tenantId: string,
  page: { first: number; after?: { createdAt: string; id: string } },
): Promise<ModelRow[]> {
  return sql<ModelRow>(
    db,
    `SELECT * FROM models WHERE tenant_id = $1 AND deleted_at IS NULL
       AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
     ORDER BY created_at DESC, id DESC LIMIT $4`,
    [tenantId, page.after?.createdAt ?? null, page.after?.id ?? null, page.first + 1],
  );
}

/** Move a model from one of `from` to `to`; false when it was not in one of them. */
export async function setModelStatus(
  db: Queryable,
  id: string,
  from: ModelStatus[],
  to: ModelStatus,
  patch: { failureReason?: string | null; tensors?: number; parameters?: number } = {},
): Promise<boolean> {
  const rows = await sql(
    db,
    `UPDATE models SET status = $2, failure_reason = $3, tensors = COALESCE($4, tensors), parameters = COALESCE($5, parameters),
       heartbeat_at = CASE WHEN $2 = 'VALIDATING' THEN now() ELSE heartbeat_at END
     WHERE id = $1 AND status = ANY($6) AND deleted_at IS NULL RETURNING id`,
    [id, to, patch.failureReason ?? null, patch.tensors ?? null, patch.parameters ?? null, from],
  );
  return rows.length > 0;
}

export async function softDeleteModel(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    "UPDATE models SET deleted_at = now() WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING id",
    [id, tenantId],
  );
  return rows.length > 0;
}

/** Whether `key` is the upload key of a model waiting for its upload. */
export async function modelAwaitingUpload(db: Queryable, key: string): Promise<boolean> {
  const rows = await sql(
    db,
    "SELECT 1 FROM models WHERE storage_key = $1 AND status = 'AWAITING_UPLOAD' AND deleted_at IS NULL",
    [key],
  );
  return rows.length > 0;
}

/** Take a VALIDATING model for check attempt `attempt` (only the next one: a duplicate message claims nothing). */
export async function claimModel(db: Queryable, id: string, attempt: number): Promise<ModelRow | null> {
  const rows = await sql<ModelRow>(
    db,
    `UPDATE models SET processing_attempt = $2, heartbeat_at = now()
     WHERE id = $1 AND status = 'VALIDATING' AND processing_attempt = $2 - 1 AND deleted_at IS NULL RETURNING *`,
    [id, attempt],
  );
  return rows[0] ?? null;
}

export async function modelHeartbeat(db: Queryable, id: string, attempt: number): Promise<void> {
  await sql(
    db,
    "UPDATE models SET heartbeat_at = now() WHERE id = $1 AND processing_attempt = $2 AND status = 'VALIDATING'",
    [id, attempt],
  );
}

/** Models whose check nobody is running: VALIDATING with no heartbeat for `staleAfterSeconds`. */
export function staleModels(db: Queryable, staleAfterSeconds: number): Promise<ModelRow[]> {
  return sql<ModelRow>(
    db,
    `SELECT * FROM models WHERE status = 'VALIDATING' AND deleted_at IS NULL
       AND heartbeat_at < now() - make_interval(secs => $1) LIMIT 100`,
    [staleAfterSeconds],
  );
}
