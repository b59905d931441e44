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

/**
 * Work no worker holds yet, per queue: QUEUED jobs, VALIDATING datasets nobody has claimed (uploads
 * on ingest; poisoning and sanitizing runs on poison) and uploaded models waiting for their check.
 */
export async function queueDepths(db: Queryable): Promise<Record<string, number>> {
  const rows = await sql<{ queue: string; n: string }>(
    db,
    `SELECT queue, count(*) AS n FROM training_jobs WHERE status = 'QUEUED' GROUP BY queue
     UNION ALL
     SELECT CASE WHEN poison IS NULL AND derived_from IS NULL THEN 'ingest' ELSE 'poison' END, count(*) FROM datasets d
       WHERE status = 'VALIDATING' AND processing_attempt = 0 AND deleted_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM datasets t WHERE t.asr_dataset_id = d.id)
       GROUP BY 1
     UNION ALL
     SELECT 'poison', count(*) FROM models WHERE status = 'VALIDATING' AND processing_attempt = 0 AND deleted_at IS NULL`,
  );
  const depths: Record<string, number> = { cpu: 0, gpu: 0, ingest: 0, poison: 0 };
  for (const row of rows) depths[row.queue] = (depths[row.queue] ?? 0) + Number(row.n);
  return depths;
}

/** One tenant's QUEUED jobs per queue. */
export async function tenantQueued(db: Queryable, tenantId: string): Promise<Record<string, number>> {
  const rows = await sql<{ queue: string; n: string }>(
    db,
    "SELECT queue, count(*) AS n FROM training_jobs WHERE tenant_id = $1 AND status = 'QUEUED' GROUP BY queue",
    [tenantId],
  );
  return Object.fromEntries(rows.map((r) => [r.queue, Number(r.n)]));
}
