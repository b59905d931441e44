import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * A job's health report as data: the verdict and per-class evidence (`job_health`), and its
 * training samples ranked by suspicion (`job_suspicious_samples`, the top of the ranking; every
 * sample's score stays in the `health_scores.npy` artifact). Both go with their job.
 */
export class JobHealth1765100000000 implements MigrationInterface {
  name = "JobHealth1765100000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query(`CREATE TABLE job_health (
      job_id uuid PRIMARY KEY REFERENCES training_jobs(id) ON DELETE CASCADE,
      verdict text NOT NULL CHECK (verdict IN ('clean', 'poisoned', 'inconclusive')),
      likely_target integer,
      evidence jsonb NOT NULL,
      sample_count integer NOT NULL,
      ranked_count integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE TABLE job_suspicious_samples (
      job_id uuid NOT NULL REFERENCES job_health(job_id) ON DELETE CASCADE,
      rank integer NOT NULL,
      sample_index integer NOT NULL,
      score real NOT NULL,
      label integer NOT NULL,
      thumbnail_key text,
      PRIMARY KEY (job_id, rank))`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("DROP TABLE job_suspicious_samples");
    await db.query("DROP TABLE job_health");
  }
}
