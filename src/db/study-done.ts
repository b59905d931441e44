import { type JobStatus, LIVE_STATES, studyStatus } from "./job-lifecycle.ts";
import { type Queryable, sql } from "./sql.ts";
import { recordEvent } from "./webhooks.ts";

/**
 * Called in the transaction that ends a study's job: when no job of the study is live any more,
 * the study is marked done (once) and its STUDY_DONE event goes into the outbox.
 */
export async function markStudyDoneIfFinished(tx: Queryable, studyId: string): Promise<void> {
  const done = await sql<{
    id: string;
    tenant_id: string;
    labels: unknown;
    external_id: string | null;
    cancelled_at: Date | null;
  }>(
    tx,
    `UPDATE studies SET done_at = now() WHERE id = $1 AND done_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM training_jobs WHERE study_id = $1 AND status = ANY($2))
     RETURNING id, tenant_id, labels, external_id, cancelled_at`,
    [studyId, LIVE_STATES],
  );
  const study = done[0];
  if (!study) return;
  const jobs = await sql<{ id: string; method: string; seed: number; status: JobStatus }>(
    tx,
    "SELECT id, method, seed, status FROM training_jobs WHERE study_id = $1 ORDER BY idempotency_key",
    [studyId],
  );
  const status = studyStatus(
    study.cancelled_at !== null,
    jobs.map((j) => j.status),
  );
  await recordEvent(tx, study.tenant_id, "STUDY_DONE", {
    study: { id: study.id, status, labels: study.labels, externalId: study.external_id, jobs },
  });
}
