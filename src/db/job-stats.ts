import type { JobStatus } from "./job-lifecycle.ts";
import { type Queryable, sql } from "./sql.ts";

/** Counts over jobs and datasets: operators' metrics and per-tenant limits. */

/** Jobs by status and queue, all tenants (metrics). */
export async function jobCounts(
  db: Queryable,
): Promise<{ status: JobStatus; queue: string; count: number }[]> {
  const rows = await sql<{ status: JobStatus; queue: string; n: string }>(
    db,
    "SELECT status, queue, count(*) AS n FROM training_jobs GROUP BY status, queue",
  );
  return rows.map((r) => ({ status: r.status, queue: r.queue, count: Number(r.n) }));
}

/** Work no worker holds yet, per queue: QUEUED jobs, and VALIDATING datasets nobody has claimed. */
export async function queueDepths(db: Queryable): Promise<Record<string, number>> {
  const rows = await sql<{ queue: string; n: string }>(
    db,
    `SELECT queue, count(*) AS n FROM training_jobs WHERE status = 'QUEUED' GROUP BY queue
     UNION ALL
     SELECT CASE WHEN poison IS NULL THEN 'ingest' ELSE 'poison' END, count(*) FROM datasets d
       WHERE status = 'VALIDATING' AND processing_attempt = 0 AND deleted_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM datasets t WHERE t.asr_dataset_id = d.id)
       GROUP BY 1`,
  );
  const depths: Record<string, number> = { cpu: 0, gpu: 0, ingest: 0, poison: 0 };
  for (const row of rows) depths[row.queue] = Number(row.n);
  return depths;
}
