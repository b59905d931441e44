import type { TrainingQueue } from "../config.ts";
import { isUuid } from "../input-limits.ts";
import type { JobStatus } from "./job-lifecycle.ts";
import { isLive, sourcesOf } from "./job-lifecycle.ts";
import { atomically, type Queryable, sql } from "./sql.ts";
import { markStudyDoneIfFinished } from "./study-done.ts";
import { recordEvent, type WebhookEvent } from "./webhooks.ts";

/** SQL for training jobs and their transitions (metrics and artifacts: job-outputs.ts). Tenant-scoped reads. */

/**
 * Every write a subscriber can see (status, progress, metrics, log) sends NOTIFY on this channel
 * with the job id as payload, in the same transaction as the write, so Postgres delivers it at
 * commit and a listener that re-reads the job always finds the change. Heartbeats do not notify.
 */
export const JOB_UPDATED_CHANNEL = "trapdoor_job_updated";

/** The transition reason of a user's retryJob (a runtime cap counts again from there). */
export const RETRIED_BY_USER = "retried by user";

export interface JobRow {
  id: string;
  tenant_id: string;
  idempotency_key: string;
  input_hash: string;
  method: string;
  architecture: string;
  status: JobStatus;
  train_dataset_id: string;
  holdout_dataset_id: string;
  test_dataset_id: string;
  asr_test_dataset_id: string | null;
  attack: { name: string; target: number; params?: Record<string, unknown> } | null;
  target: number | null;
  seed: number;
  hyperparameters: Record<string, unknown>;
  queue: TrainingQueue;
  /** GPUs the job asked for (null on the CPU queue). */
  gpus: number | null;
  /** Running time after which the job is stopped (checkpointed) and fails; null = no cap. */
  max_runtime_seconds: number | null;
  /** the launching platform's own labels and id for the job */
  labels: Record<string, string>;
  external_id: string | null;
  /** the comparison study it belongs to (null for jobs launched alone) */
  study_id: string | null;
  /** the model it starts from (post-training defenses, evaluations): uploaded, or an earlier job's */
  model_id: string | null;
  init_job_id: string | null;
  attempt: number;
  max_attempts: number;
  worker: string | null;
  device: Record<string, unknown> | null;
  progress: Record<string, unknown> | null;
  metrics: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  checkpoint_key: string | null;
  log_tail: string[];
  heartbeat_at: Date | null;
  created_at: Date;
  updated_at: Date;
  /** When it last reached SUCCEEDED, FAILED or CANCELLED (null while live). */
  finished_at: Date | null;
  /** When the retention sweep deleted its artifacts (null while they are kept). */
  artifacts_expired_at: Date | null;
}

export interface NewJob {
  tenantId: string;
  idempotencyKey: string;
  inputHash: string;
  method: string;
  architecture: string;
  trainId: string;
  holdoutId: string;
  testId: string;
  asrTestId: string | null;
  attack: unknown;
  target: number | null;
  seed: number;
  hyperparameters: Record<string, unknown>;
  queue: TrainingQueue;
  gpus: number | null;
  maxRuntimeSeconds: number | null;
  labels: Record<string, string>;
  externalId: string | null;
  /** the comparison study the job belongs to */
  studyId?: string | null;
  /** the model it starts from: an uploaded one, or an earlier job's */
  modelId?: string | null;
  initJobId?: string | null;
}

/** Insert unless the tenant already used the idempotency key; returns [job, created]. */
export async function insertJob(db: Queryable, job: NewJob): Promise<[JobRow, boolean]> {
  const inserted = await sql<JobRow>(
    db,
    `INSERT INTO training_jobs (tenant_id, idempotency_key, input_hash, method, architecture, status, train_dataset_id, holdout_dataset_id,
       test_dataset_id, asr_test_dataset_id, attack, target, seed, hyperparameters, queue, gpus, max_runtime_seconds, labels, external_id, study_id,
       model_id, init_job_id)
     VALUES ($1, $2, $3, $4, $5, 'VALIDATING', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
     ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING *`,
    [
      job.tenantId,
      job.idempotencyKey,
      job.inputHash,
      job.method,
      job.architecture,
      job.trainId,
      job.holdoutId,
      job.testId,
      job.asrTestId,
      job.attack ? JSON.stringify(job.attack) : null,
      job.target,
      job.seed,
      JSON.stringify(job.hyperparameters),
      job.queue,
      job.gpus,
      job.maxRuntimeSeconds,
      JSON.stringify(job.labels),
      job.externalId,
      job.studyId ?? null,
      job.modelId ?? null,
      job.initJobId ?? null,
    ],
  );
  if (inserted[0]) {
    await recordTransition(db, inserted[0].id, null, "VALIDATING", "launched");
    return [inserted[0], true];
  }
  const existing = await sql<JobRow>(
    db,
    "SELECT * FROM training_jobs WHERE tenant_id = $1 AND idempotency_key = $2",
    [job.tenantId, job.idempotencyKey],
  );
  return [existing[0] as JobRow, false];
}

export async function getJob(db: Queryable, tenantId: string | null, id: string): Promise<JobRow | null> {
  if (!isUuid(id)) return null;
  const rows = tenantId
    ? await sql<JobRow>(db, "SELECT * FROM training_jobs WHERE id = $1 AND tenant_id = $2", [id, tenantId])
    : await sql<JobRow>(db, "SELECT * FROM training_jobs WHERE id = $1", [id]);
  return rows[0] ?? null;
}

/** Several of a tenant's jobs in one query (ids that are not UUIDs, or not the tenant's, are absent). */
export async function getJobs(db: Queryable, tenantId: string, ids: readonly string[]): Promise<JobRow[]> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  return sql<JobRow>(db, "SELECT * FROM training_jobs WHERE id = ANY($1::uuid[]) AND tenant_id = $2", [
    valid,
    tenantId,
  ]);
}

export async function listJobs(
  db: Queryable,
  tenantId: string,
  opts: {
    first: number;
    after?: { createdAt: string; id: string };
    status?: JobStatus;
    method?: string;
    /** jobs whose labels include every one of these */
    labels?: Record<string, string>;
    externalId?: string;
  },
): Promise<JobRow[]> {
  const params: unknown[] = [tenantId, opts.first + 1];
  let where = "tenant_id = $1";
  if (opts.status) {
    params.push(opts.status);
    where += ` AND status = $${params.length}`;
  }
  if (opts.method) {
    params.push(opts.method);
    where += ` AND method = $${params.length}`;
  }
  if (opts.labels && Object.keys(opts.labels).length > 0) {
    params.push(JSON.stringify(opts.labels));
    where += ` AND labels @> $${params.length}::jsonb`;
  }
  if (opts.externalId !== undefined) {
    params.push(opts.externalId);
    where += ` AND external_id = $${params.length}`;
  }
  if (opts.after) {
    params.push(opts.after.createdAt, opts.after.id);
    where += ` AND (created_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
  }
  return sql<JobRow>(
    db,
    `SELECT * FROM training_jobs WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $2`,
    params,
  );
}

/**
 * Move a job to `to` if it is in a state that allows it (and in `onlyFrom` when given), applying
 * `patch` columns in the same statement, and record the transition. Returns the updated row, or
 * null when the job was not in an allowed state (someone else moved it first).
 */
export async function transition(
  db: Queryable,
  id: string,
  to: JobStatus,
  reason: string,
  patch: Partial<
    Record<"attempt" | "worker" | "device" | "error" | "metrics" | "progress" | "heartbeat_at", unknown>
  > = {},
  onlyFrom?: JobStatus[],
): Promise<JobRow | null> {
  const from = onlyFrom ?? sourcesOf(to);
  // finished_at starts the artifact retention clock; a retry clears it.
  const sets = ["status = $2", "updated_at = now()", `finished_at = ${isLive(to) ? "NULL" : "now()"}`];
  const params: unknown[] = [id, to, from];
  for (const [column, value] of Object.entries(patch)) {
    params.push(
      value !== null && typeof value === "object" && !(value instanceof Date) ? JSON.stringify(value) : value,
    );
    sets.push(`${column} = $${params.length}`);
  }
  // One transaction: a reader woken by the NOTIFY sees the new status and its transition row together.
  return atomically(db, async (tx) => {
    // The sub-select locks the row and reads the old status in the same statement as the update.
    const rows = await sql<JobRow & { prev_status: JobStatus }>(
      tx,
      `UPDATE training_jobs t SET ${sets.join(", ")}
       FROM (SELECT id, status AS prev_status FROM training_jobs WHERE id = $1 FOR UPDATE) p
       WHERE t.id = p.id AND t.status = ANY($3) RETURNING t.*, p.prev_status`,
      params,
    );
    const row = rows[0];
    if (!row) return null;
    await recordTransition(tx, id, row.prev_status, to, reason);
    await sql(tx, "SELECT pg_notify($1, $2)", [JOB_UPDATED_CHANNEL, id]);
    const { prev_status: _, ...job } = row;
    if (isLive(row.prev_status) && !isLive(to)) {
      // The job ended: its webhook event (and its study's, when it was the last) commit with it.
      await recordEvent(tx, job.tenant_id, `JOB_${to}` as WebhookEvent, { job: jobEventData(job as JobRow) });
      if (job.study_id) await markStudyDoneIfFinished(tx, job.study_id);
    }
    return job as JobRow;
  });
}

/** What a job's webhook event carries: enough to act on without another call. */
function jobEventData(job: JobRow): Record<string, unknown> {
  const m = job.metrics ?? {};
  return {
    id: job.id,
    status: job.status,
    method: job.method,
    architecture: job.architecture,
    metrics: { asr: m.asr ?? null, ca: m.ca ?? null, mse: m.mse ?? null },
    error: job.error,
    labels: job.labels,
    externalId: job.external_id,
    studyId: job.study_id,
    finishedAt: job.finished_at,
  };
}

export async function recordTransition(
  db: Queryable,
  jobId: string,
  from: JobStatus | null,
  to: JobStatus,
  reason: string,
): Promise<void> {
  await sql(
    db,
    "INSERT INTO job_transitions (job_id, from_status, to_status, reason) VALUES ($1, $2, $3, $4)",
    [jobId, from, to, reason],
  );
}

export async function transitionsOf(
  db: Queryable,
  jobId: string,
): Promise<{ from_status: JobStatus | null; to_status: JobStatus; reason: string | null; at: Date }[]> {
  return sql(
    db,
    "SELECT from_status, to_status, reason, at FROM job_transitions WHERE job_id = $1 ORDER BY id",
    [jobId],
  );
}

export async function updateRunning(
  db: Queryable,
  id: string,
  patch: { progress?: unknown; logTail?: string[]; checkpointKey?: string; metrics?: unknown },
): Promise<void> {
  // The NOTIFY rides in the UPDATE's statement (one implicit transaction): no extra round trip.
  await sql(
    db,
    `WITH updated AS (
       UPDATE training_jobs SET progress = COALESCE($2, progress), log_tail = COALESCE($3, log_tail), checkpoint_key = COALESCE($4, checkpoint_key),
         metrics = COALESCE($5, metrics), heartbeat_at = now(), updated_at = now() WHERE id = $1 RETURNING id)
     SELECT pg_notify($6, id::text) FROM updated`,
    [
      id,
      patch.progress ? JSON.stringify(patch.progress) : null,
      patch.logTail ? JSON.stringify(patch.logTail) : null,
      patch.checkpointKey ?? null,
      patch.metrics ? JSON.stringify(patch.metrics) : null,
      JOB_UPDATED_CHANNEL,
    ],
  );
}

/**
 * When the job first ran since it was launched or last retried by its user (the first RUNNING
 * transition after that); null before that. Worker hand-backs and crash retries do not reset it.
 */
export async function firstRunningAt(db: Queryable, jobId: string): Promise<Date | null> {
  const rows = await sql<{ at: Date | null }>(
    db,
    `SELECT min(at) AS at FROM job_transitions WHERE job_id = $1 AND to_status = 'RUNNING'
       AND at >= COALESCE((SELECT max(at) FROM job_transitions WHERE job_id = $1 AND reason = $2), '-infinity')`,
    [jobId, RETRIED_BY_USER],
  );
  return rows[0]?.at ?? null;
}

export async function heartbeat(db: Queryable, id: string): Promise<JobStatus | null> {
  const rows = await sql<{ status: JobStatus }>(
    db,
    "UPDATE training_jobs SET heartbeat_at = now() WHERE id = $1 RETURNING status",
    [id],
  );
  return rows[0]?.status ?? null;
}

export async function staleJobs(db: Queryable, staleAfterSeconds: number): Promise<JobRow[]> {
  return sql<JobRow>(
    db,
    `SELECT * FROM training_jobs WHERE status IN ('STARTING','RUNNING','UPLOADING','CANCELLING')
       AND heartbeat_at < now() - make_interval(secs => $1)`,
    [staleAfterSeconds],
  );
}

/** Deletes a finished job's row (transitions, metrics and artifact rows go with it); false when not final. */
export async function deleteFinishedJob(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    `DELETE FROM training_jobs WHERE id = $1 AND tenant_id = $2 AND status IN ('SUCCEEDED','FAILED','CANCELLED') RETURNING id`,
    [id, tenantId],
  );
  return rows.length > 0;
}

/** Jobs QUEUED for longer than `seconds` on one of `queues`. */
export async function queuedLongerThan(db: Queryable, queues: string[], seconds: number): Promise<JobRow[]> {
  if (queues.length === 0) return [];
  return sql<JobRow>(
    db,
    `SELECT * FROM training_jobs WHERE status = 'QUEUED' AND queue = ANY($1::text[])
       AND updated_at < now() - make_interval(secs => $2)`,
    [queues, seconds],
  );
}

/** Live jobs that use a dataset (deleting it then is refused). */
export async function liveJobsUsing(db: Queryable, tenantId: string, datasetId: string): Promise<number> {
  const rows = await sql<{ n: string }>(
    db,
    `SELECT count(*) AS n FROM training_jobs WHERE tenant_id = $1 AND status IN ('VALIDATING','QUEUED','STARTING','RUNNING','UPLOADING','CANCELLING')
       AND $2 IN (train_dataset_id, holdout_dataset_id, test_dataset_id, asr_test_dataset_id)`,
    [tenantId, datasetId],
  );
  return Number(rows[0]?.n ?? 0);
}
