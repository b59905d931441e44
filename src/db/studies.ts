import type { JobRow } from "./jobs.ts";
import { type Queryable, sql } from "./sql.ts";

/** SQL for comparison studies. Tenant-scoped reads. */

export interface StudySpec {
  methods: { method: string; hyperparameters: Record<string, unknown> }[];
  seeds: number[];
  trainDatasetId: string;
  holdoutDatasetId: string;
  testDatasetId: string;
  asrTestDatasetId: string | null;
  target: number | null;
  architecture: string | null;
}

export interface StoredReport {
  key: string;
  sizeBytes: number;
  sha256: string;
}

export interface StudyRow {
  id: string;
  tenant_id: string;
  idempotency_key: string;
  input_hash: string;
  spec: StudySpec;
  labels: Record<string, string>;
  external_id: string | null;
  cancelled_at: Date | null;
  report: StoredReport | null;
  created_at: Date;
}

export async function insertStudy(
  db: Queryable,
  row: Pick<StudyRow, "tenant_id" | "idempotency_key" | "input_hash" | "spec" | "labels" | "external_id">,
): Promise<StudyRow | null> {
  const rows = await sql<StudyRow>(
    db,
    `INSERT INTO studies (tenant_id, idempotency_key, input_hash, spec, labels, external_id) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *`,
    [
      row.tenant_id,
      row.idempotency_key,
      row.input_hash,
      JSON.stringify(row.spec),
      JSON.stringify(row.labels),
      row.external_id,
    ],
  );
  return rows[0] ?? null;
}

export async function studyByKey(db: Queryable, tenantId: string, key: string): Promise<StudyRow | null> {
  const rows = await sql<StudyRow>(
    db,
    "SELECT * FROM studies WHERE tenant_id = $1 AND idempotency_key = $2",
    [tenantId, key],
  );
  return rows[0] ?? null;
}

export async function getStudy(db: Queryable, tenantId: string, id: string): Promise<StudyRow | null> {
  const rows = await sql<StudyRow>(db, "SELECT * FROM studies WHERE tenant_id = $1 AND id = $2", [
    tenantId,
    id,
  ]);
  return rows[0] ?? null;
}

/** Newest first; `first` + 1 rows. */
export function listStudies(
  db: Queryable,
  tenantId: string,
  page: { first: number; after?: { createdAt: string; id: string } },
): Promise<StudyRow[]> {
  return sql<StudyRow>(
    db,
    `SELECT * FROM studies WHERE tenant_id = $1
       AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
     ORDER BY created_at DESC, id DESC LIMIT $4`,
    [tenantId, page.after?.createdAt ?? null, page.after?.id ?? null, page.first + 1],
  );
}

/** A study's jobs in launch order (method by method, seed by seed). */
export function studyJobs(db: Queryable, studyId: string): Promise<JobRow[]> {
  return sql<JobRow>(db, "SELECT * FROM training_jobs WHERE study_id = $1 ORDER BY idempotency_key", [
    studyId,
  ]);
}

export async function markStudyCancelled(db: Queryable, id: string): Promise<void> {
  await sql(db, "UPDATE studies SET cancelled_at = coalesce(cancelled_at, now()) WHERE id = $1", [id]);
}

export async function setStudyReport(db: Queryable, id: string, report: StoredReport): Promise<void> {
  await sql(db, "UPDATE studies SET report = $2 WHERE id = $1", [id, JSON.stringify(report)]);
}
