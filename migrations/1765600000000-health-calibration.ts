import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * A health report's calibration: what its verdict's thresholds were fitted on and their error
 * rates out of sample, as the trainer wrote it (null for reports it does not vouch for, and for
 * reports stored before it existed).
 */
export class HealthCalibration1765600000000 implements MigrationInterface {
  name = "HealthCalibration1765600000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE job_health ADD COLUMN calibration jsonb");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE job_health DROP COLUMN calibration");
  }
}
