import type { MigrationInterface, QueryRunner } from "typeorm";

/** What a job asks of its worker: how many GPUs (NULL on CPU) and a cap on its running time. */
export class JobResources1764180000000 implements MigrationInterface {
  name = "JobResources1764180000000";

  async up(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE training_jobs ADD COLUMN gpus int, ADD COLUMN max_runtime_seconds int");
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query("ALTER TABLE training_jobs DROP COLUMN max_runtime_seconds, DROP COLUMN gpus");
  }
}
