import { randomUUID } from "node:crypto";
import { isUuid } from "../input-limits.ts";
import { atomically, type Queryable, sql } from "./sql.ts";
import { recordEvent } from "./webhooks.ts";

/** SQL for the datasets table. Every statement is scoped by tenant. */

export type DatasetRole = "TRAIN" | "HOLDOUT" | "TEST" | "ASR_TEST";
export type DatasetStatus = "AWAITING_UPLOAD" | "VALIDATING" | "READY" | "FAILED";

export interface UploadPart {
  name: string;
  sizeBytes: number;
  sha256: string;
  key: string;
}

export interface DatasetRow {
  id: string;
  tenant_id: string;
  name: string;
  role: DatasetRole;
  format: string;
  status: DatasetStatus;
  failure_reason: string | null;
  parts: UploadPart[];
  size_bytes: string;
  count: number | null;
  height: number | null;
  width: number | null;
  channels: number | null;
  num_classes: number | null;
  class_names: string[] | null;
  class_histogram: number[] | null;
  manifest: Record<string, unknown> | null;
  poison: Record<string, unknown> | null;
  /** archive formats' decode options (datasets/options.ts), checked at upload */
  ingest_options: Record<string, unknown> | null;
  /** Which attempt of its ingest or poisoning run holds the dataset (0: none yet), and where. */
  processing_attempt: number;
  processing_worker: string | null;
  processing_heartbeat_at: Date | null;
  /** A poisoned dataset: the clean dataset it was made from. */
  source_dataset_id: string | null;
  /** A poisoned TRAIN set: the ASR_TEST set its poisoning run builds too. */
  asr_dataset_id: string | null;
  /** A sanitized TRAIN set: what it was derived from (sanitizeDataset). */
  derived_from: DerivedFrom | null;
  created_at: Date;
}

/** A sanitized dataset's lineage; `scoresKey` (the report's scores object) is internal. */
export interface DerivedFrom {
  datasetId: string;
  jobId: string;
  policy: Record<string, unknown>;
  removedCount: number | null;
  scoresKey: string;
}

const COLUMNS = `id, tenant_id, name, role, format, status, failure_reason, parts, size_bytes, count, height, width, channels,
  num_classes, class_names, class_histogram, manifest, poison, ingest_options, processing_attempt, processing_worker,
  processing_heartbeat_at, source_dataset_id, asr_dataset_id, derived_from, created_at`;

export async function insertDataset(
  db: Queryable,
  row: {
    id: string;
    tenantId: string;
    name: string;
    role: DatasetRole;
    format: string;
    status: DatasetStatus;
    parts: UploadPart[];
    sizeBytes: number;
    classNames?: string[] | null;
    poison?: unknown;
    sourceId?: string | null;
    ingestOptions?: Record<string, unknown> | null;
    asrDatasetId?: string | null;
    derivedFrom?: DerivedFrom | null;
  },
): Promise<DatasetRow> {
  const rows = await sql<DatasetRow>(
    db,
    `INSERT INTO datasets (id, tenant_id, name, role, format, status, parts, size_bytes, class_names, poison, source_dataset_id,
       ingest_options, asr_dataset_id, derived_from)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING ${COLUMNS}`,
    [
      row.id,
      row.tenantId,
      row.name,
      row.role,
      row.format,
      row.status,
      JSON.stringify(row.parts),
      row.sizeBytes,
      row.classNames ? JSON.stringify(row.classNames) : null,
      row.poison ? JSON.stringify(row.poison) : null,
      row.sourceId ?? null,
      row.ingestOptions ? JSON.stringify(row.ingestOptions) : null,
      row.asrDatasetId ?? null,
      row.derivedFrom ? JSON.stringify(row.derivedFrom) : null,
    ],
  );
  return rows[0] as DatasetRow;
}

export async function getDataset(db: Queryable, tenantId: string, id: string): Promise<DatasetRow | null> {
  if (!isUuid(id)) return null;
  const rows = await sql<DatasetRow>(
    db,
    `SELECT ${COLUMNS} FROM datasets WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL`,
    [id, tenantId],
  );
  return rows[0] ?? null;
}

/** Whether a dataset may still receive its upload: it exists, is not deleted and awaits its bytes. */
export async function awaitingUpload(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  if (!isUuid(id) || !isUuid(tenantId)) return false;
  const rows = await sql(
    db,
    "SELECT 1 FROM datasets WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL AND status = 'AWAITING_UPLOAD'",
    [id, tenantId],
  );
  return rows.length > 0;
}

/** Deleted datasets whose objects were not yet purged, deleted more than `seconds` ago. */
export async function deletedUnpurged(
  db: Queryable,
  seconds: number,
): Promise<{ id: string; tenant_id: string }[]> {
  return sql(
    db,
    `SELECT id, tenant_id FROM datasets WHERE deleted_at IS NOT NULL AND purged_at IS NULL
       AND deleted_at < now() - make_interval(secs => $1) LIMIT 1000`,
    [seconds],
  );
}

export async function markPurged(db: Queryable, id: string): Promise<void> {
  await sql(db, "UPDATE datasets SET purged_at = now() WHERE id = $1", [id]);
}

/** Several of a tenant's datasets in one query (deleted ones and ids that are not UUIDs are absent). */
export async function getDatasets(
  db: Queryable,
  tenantId: string,
  ids: readonly string[],
): Promise<DatasetRow[]> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return sql<DatasetRow>(
    db,
    `SELECT ${COLUMNS} FROM datasets WHERE id = ANY($1::uuid[]) AND tenant_id = $2 AND deleted_at IS NULL`,
    [valid, tenantId],
  );
}

export async function listDatasets(
  db: Queryable,
  tenantId: string,
  opts: { first: number; after?: { createdAt: string; id: string }; role?: DatasetRole },
): Promise<DatasetRow[]> {
  const params: unknown[] = [tenantId, opts.first + 1];
  let where = "tenant_id = $1 AND deleted_at IS NULL";
  if (opts.role) {
    params.push(opts.role);
    where += ` AND role = $${params.length}`;
  }
  if (opts.after) {
    params.push(opts.after.createdAt, opts.after.id);
    where += ` AND (created_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
  }
  return sql<DatasetRow>(
    db,
    `SELECT ${COLUMNS} FROM datasets WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $2`,
    params,
  );
}

/** Move a dataset from one status to another; returns false when it was not in `from` (a concurrent change won). */
export async function setDatasetStatus(
  db: Queryable,
  id: string,
  from: DatasetStatus[],
  to: DatasetStatus,
  reason: string | null = null,
): Promise<boolean> {
  return atomically(db, async (tx) => {
    const rows = await sql<DatasetRow>(
      tx,
      `UPDATE datasets SET status = $2, failure_reason = $3, updated_at = now() WHERE id = $1 AND status = ANY($4) RETURNING ${COLUMNS}`,
      [id, to, reason, from],
    );
    const row = rows[0];
    if (row && to === "FAILED")
      await recordEvent(tx, row.tenant_id, "DATASET_FAILED", { dataset: datasetEventData(row) });
    return row !== undefined;
  });
}

/** What a dataset's webhook event carries. */
function datasetEventData(d: DatasetRow): Record<string, unknown> {
  return {
    id: d.id,
    name: d.name,
    role: d.role,
    status: d.status,
    count: d.count,
    failureReason: d.failure_reason,
  };
}

export async function markDatasetReady(
  db: Queryable,
  id: string,
  manifest: {
    count: number;
    height: number;
    width: number;
    channels: number;
    numClasses: number;
    classNames: string[];
    classHistogram: number[];
  },
): Promise<boolean> {
  // A dataset deleted while it was being processed stays deleted (false: the caller removes what it stored).
  return atomically(db, async (tx) => {
    const rows = await sql<DatasetRow>(
      tx,
      `UPDATE datasets SET status = 'READY', failure_reason = NULL, count = $2, height = $3, width = $4, channels = $5, num_classes = $6,
       class_names = $7, class_histogram = $8, manifest = $9, updated_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING ${COLUMNS}`,
      [
        id,
        manifest.count,
        manifest.height,
        manifest.width,
        manifest.channels,
        manifest.numClasses,
        JSON.stringify(manifest.classNames),
        JSON.stringify(manifest.classHistogram),
        JSON.stringify(manifest),
      ],
    );
    const row = rows[0];
    if (row) await recordEvent(tx, row.tenant_id, "DATASET_READY", { dataset: datasetEventData(row) });
    return row !== undefined;
  });
}

/** A dataset this service derives from another (poisoned, its ASR set, sanitized): CANONICAL, VALIDATING, built on a worker. */
export function insertDerivedDataset(
  db: Queryable,
  row: {
    tenantId: string;
    name: string;
    role: DatasetRole;
    classNames: string[] | null;
    sourceId: string;
    poison?: unknown;
    asrDatasetId?: string | null;
    derivedFrom?: DerivedFrom | null;
  },
): Promise<DatasetRow> {
  return insertDataset(db, {
    ...row,
    id: randomUUID(),
    format: "CANONICAL",
    status: "VALIDATING",
    parts: [],
    sizeBytes: 0,
  });
}

/** A dataset by id, whatever its tenant (workers; never for a tenant's request). */
export async function datasetById(db: Queryable, id: string): Promise<DatasetRow | null> {
  const rows = await sql<DatasetRow>(db, `SELECT ${COLUMNS} FROM datasets WHERE id = $1`, [id]);
  return rows[0] ?? null;
}

/**
 * Take a VALIDATING dataset for processing attempt `attempt`: only when the previous attempt is
 * the one on record (a stale or duplicate message claims nothing). Returns the claimed row.
 */
export async function claimDataset(
  db: Queryable,
  id: string,
  attempt: number,
  worker: string,
): Promise<DatasetRow | null> {
  const rows = await sql<DatasetRow>(
    db,
    `UPDATE datasets SET processing_attempt = $2, processing_worker = $3, processing_heartbeat_at = now(), updated_at = now()
     WHERE id = $1 AND status = 'VALIDATING' AND processing_attempt = $2 - 1 AND deleted_at IS NULL RETURNING ${COLUMNS}`,
    [id, attempt, worker],
  );
  return rows[0] ?? null;
}

export async function datasetHeartbeat(db: Queryable, id: string, attempt: number): Promise<void> {
  await sql(
    db,
    "UPDATE datasets SET processing_heartbeat_at = now() WHERE id = $1 AND processing_attempt = $2 AND status = 'VALIDATING'",
    [id, attempt],
  );
}

/**
 * VALIDATING datasets nobody is working on: claimed ones whose worker stopped heartbeating, and
 * unclaimed ones that waited longer than that (their message was lost, or they predate the queue).
 * A poisoning run's ASR_TEST set is left out: its TRAIN set's run owns it.
 */
export async function staleDatasets(db: Queryable, staleAfterSeconds: number): Promise<DatasetRow[]> {
  return sql<DatasetRow>(
    db,
    `SELECT ${COLUMNS} FROM datasets d WHERE status = 'VALIDATING' AND deleted_at IS NULL
       AND COALESCE(processing_heartbeat_at, updated_at) < now() - make_interval(secs => $1)
       AND NOT EXISTS (SELECT 1 FROM datasets t WHERE t.asr_dataset_id = d.id)`,
    [staleAfterSeconds],
  );
}

/** Soft delete (jobs keep their references); refused by the caller while a live job uses it. */
export async function softDeleteDataset(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    "UPDATE datasets SET deleted_at = now() WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING id",
    [id, tenantId],
  );
  return rows.length > 0;
}
