import { forgetThumbnails } from "./job-health.ts";
import { JOB_UPDATED_CHANNEL } from "./jobs.ts";
import { type Queryable, sql } from "./sql.ts";

/** SQL for what a job produces: per-epoch metrics (each one notifies watchers) and artifacts. */

export async function insertMetric(
  db: Queryable,
  jobId: string,
  attempt: number,
  stage: string,
  epoch: number | null,
  name: string,
  value: number | null,
): Promise<void> {
  await sql(
    db,
    `WITH inserted AS (
       INSERT INTO job_metrics (job_id, attempt, stage, epoch, name, value) VALUES ($1, $2, $3, $4, $5, $6) RETURNING job_id)
     SELECT pg_notify($7, job_id::text) FROM inserted`,
    [jobId, attempt, stage, epoch, name, value, JOB_UPDATED_CHANNEL],
  );
}

/** Per-epoch series of the latest attempt that reported each (stage, name). */
export async function metricHistory(
  db: Queryable,
  jobId: string,
  filter: { name?: string; stage?: string },
): Promise<{ stage: string; epoch: number | null; name: string; value: number | null }[]> {
  return sql(
    db,
    `SELECT DISTINCT ON (stage, name, epoch) stage, epoch, name, value FROM job_metrics
     WHERE job_id = $1 AND ($2::text IS NULL OR name = $2) AND ($3::text IS NULL OR stage = $3)
     ORDER BY stage, name, epoch, attempt DESC, id DESC`,
    [jobId, filter.name ?? null, filter.stage ?? null],
  );
}

export interface ArtifactRow {
  id: string;
  job_id: string;
  kind: string;
  format: string;
  file_name: string;
  storage_key: string;
  size_bytes: string;
  sha256: string;
}

export async function upsertArtifact(
  db: Queryable,
  a: {
    jobId: string;
    tenantId: string;
    kind: string;
    format: string;
    fileName: string;
    key: string;
    sizeBytes: number;
    sha256: string;
  },
): Promise<void> {
  await sql(
    db,
    `INSERT INTO artifacts (job_id, tenant_id, kind, format, file_name, storage_key, size_bytes, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (job_id, file_name) DO UPDATE SET kind = EXCLUDED.kind, format = EXCLUDED.format, storage_key = EXCLUDED.storage_key,
       size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256, created_at = now()`,
    [a.jobId, a.tenantId, a.kind, a.format, a.fileName, a.key, a.sizeBytes, a.sha256],
  );
}

export async function artifactsOf(db: Queryable, tenantId: string, jobId: string): Promise<ArtifactRow[]> {
  return sql<ArtifactRow>(
    db,
    "SELECT * FROM artifacts WHERE job_id = $1 AND tenant_id = $2 ORDER BY kind, file_name",
    [jobId, tenantId],
  );
}

/** Finished jobs whose artifacts are older than the retention (`days` after the job ended). */
export async function jobsPastRetention(
  db: Queryable,
  days: number,
): Promise<{ id: string; tenant_id: string }[]> {
  return sql(
    db,
    `SELECT id, tenant_id FROM training_jobs WHERE finished_at < now() - make_interval(days => $1)
       AND artifacts_expired_at IS NULL AND status IN ('SUCCEEDED','FAILED','CANCELLED') LIMIT 1000`,
    [days],
  );
}

/** Forgets a finished job's artifacts and checkpoint (their objects were deleted). */
export async function markArtifactsExpired(db: Queryable, jobId: string): Promise<void> {
  await sql(db, "DELETE FROM artifacts WHERE job_id = $1", [jobId]);
  await forgetThumbnails(db, jobId);
  await sql(
    db,
    "UPDATE training_jobs SET artifacts_expired_at = now(), checkpoint_key = NULL WHERE id = $1 AND status IN ('SUCCEEDED','FAILED','CANCELLED')",
    [jobId],
  );
}

/** One metric of a job in the order it was reported (stages in run order), latest attempt's. */
export function metricSeries(
  db: Queryable,
  jobId: string,
  name: string,
): Promise<{ stage: string; epoch: number | null; value: number | null }[]> {
  return sql(
    db,
    `SELECT stage, epoch, value FROM job_metrics
     WHERE job_id = $1 AND name = $2 AND attempt = (SELECT max(attempt) FROM job_metrics WHERE job_id = $1 AND name = $2)
     ORDER BY id`,
    [jobId, name],
  );
}
