import type { DataSource } from "typeorm";
import { type Queryable, sql, transaction } from "./sql.ts";

/** SQL for a job's health report: the verdict row and the ranked suspicious samples. */

export type Verdict = "clean" | "poisoned" | "inconclusive";

export interface HealthRow {
  job_id: string;
  verdict: Verdict;
  likely_target: number | null;
  evidence: Record<string, unknown>;
  /** The trainer's `calibration` section (health.py); null where the report carries none. */
  calibration: Record<string, unknown> | null;
  sample_count: number;
  ranked_count: number;
}

export interface SuspiciousRow {
  rank: number;
  sample_index: number;
  score: number;
  label: number;
  thumbnail_key: string | null;
}

export interface RankedSample {
  index: number;
  score: number;
  label: number;
  thumbnailKey: string | null;
}

/** Rows per INSERT: four arrays of this length stay well under PostgreSQL's message limits. */
const CHUNK = 5000;

/** Replace the job's report (a retried upload writes it again) in one transaction. */
export async function saveHealth(
  db: DataSource,
  report: Omit<HealthRow, "ranked_count">,
  ranked: RankedSample[],
): Promise<void> {
  await transaction(db, async (tx) => {
    await sql(tx, "DELETE FROM job_health WHERE job_id = $1", [report.job_id]);
    await sql(
      tx,
      `INSERT INTO job_health (job_id, verdict, likely_target, evidence, calibration, sample_count, ranked_count)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        report.job_id,
        report.verdict,
        report.likely_target,
        report.evidence,
        report.calibration,
        report.sample_count,
        ranked.length,
      ],
    );
    for (let start = 0; start < ranked.length; start += CHUNK) {
      const part = ranked.slice(start, start + CHUNK);
      await sql(
        tx,
        `INSERT INTO job_suspicious_samples (job_id, rank, sample_index, score, label, thumbnail_key)
         SELECT $1, r.rank, r.sample_index, r.score, r.label, r.thumbnail_key
         FROM unnest($2::int[], $3::int[], $4::real[], $5::int[], $6::text[]) AS r(rank, sample_index, score, label, thumbnail_key)`,
        [
          report.job_id,
          part.map((_, i) => start + i + 1),
          part.map((s) => s.index),
          part.map((s) => s.score),
          part.map((s) => s.label),
          part.map((s) => s.thumbnailKey),
        ],
      );
    }
  });
}

export async function healthOf(db: Queryable, jobId: string): Promise<HealthRow | null> {
  const rows = await sql<HealthRow>(db, "SELECT * FROM job_health WHERE job_id = $1", [jobId]);
  return rows[0] ?? null;
}

/** Ranks after `afterRank`, most suspicious first; `limit` + 1 rows so the caller sees whether more follow. */
export function suspiciousPage(
  db: Queryable,
  jobId: string,
  afterRank: number,
  limit: number,
): Promise<SuspiciousRow[]> {
  return sql<SuspiciousRow>(
    db,
    `SELECT rank, sample_index, score, label, thumbnail_key FROM job_suspicious_samples
     WHERE job_id = $1 AND rank > $2 ORDER BY rank LIMIT $3`,
    [jobId, afterRank, limit + 1],
  );
}

/** Thumbnails go with the job's other objects when retention deletes them. */
export async function forgetThumbnails(db: Queryable, jobId: string): Promise<void> {
  await sql(db, "UPDATE job_suspicious_samples SET thumbnail_key = NULL WHERE job_id = $1", [jobId]);
}
