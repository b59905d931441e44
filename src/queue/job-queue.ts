import PgBoss from "pg-boss";
import type { QueueName } from "../config.ts";

/**
 * pg-boss on the job database. The queue carries only {jobId, attempt}; Postgres rows are the truth.
 * Retries are ours (infrastructure failures only, resumed from a checkpoint), so pg-boss never
 * retries by itself, and its expiry is set far beyond any training run: a dead worker is detected
 * by our own heartbeat (see worker/reaper.ts), not by queue expiry.
 */
export interface QueueMessage {
  jobId: string;
  attempt: number;
}

export const QUEUES: QueueName[] = ["gpu", "cpu"];
const EXPIRE_HOURS = 23; // pg-boss 10 caps expiry below 24 h

export class JobQueue {
  private readonly boss: PgBoss;
  private started = false;

  constructor(databaseUrl: string) {
    this.boss = new PgBoss({ connectionString: databaseUrl, schema: "pgboss", max: 4, supervise: true });
    this.boss.on("error", () => {}); // transient connection errors are retried by pg-boss itself
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.boss.start();
    for (const name of QUEUES) {
      if (!(await this.boss.getQueue(name)))
        await this.boss.createQueue(name, { name, retryLimit: 0, expireInHours: EXPIRE_HOURS });
    }
    this.started = true;
  }

  async enqueue(queue: QueueName, message: QueueMessage): Promise<void> {
    // One message per attempt: a duplicate send (e.g. two reapers) is dropped by the singleton key.
    await this.boss.send(queue, message, {
      singletonKey: `${message.jobId}:${message.attempt}`,
      retryLimit: 0,
      expireInHours: EXPIRE_HOURS,
    });
  }

  async work(
    queue: QueueName,
    pollingIntervalSeconds: number,
    handler: (message: QueueMessage) => Promise<void>,
  ): Promise<string> {
    return this.boss.work<QueueMessage>(queue, { batchSize: 1, pollingIntervalSeconds }, async (jobs) => {
      for (const job of jobs) await handler(job.data);
    });
  }

  async stop(): Promise<void> {
    if (this.started) await this.boss.stop({ graceful: true, timeout: 5000, wait: true });
    this.started = false;
  }
}
