import PgBoss from "pg-boss";
import { type QueueName, queuesFor } from "../config.ts";

/**
 * pg-boss on the job database. The queue carries only ids and attempt numbers ({jobId, attempt}
 * on the training queues, {datasetId, attempt} on ingest and poison); Postgres rows are the
 * truth. Retries are ours (infrastructure failures only), so pg-boss never retries by itself, and
 * its expiry is set far beyond any training run: a dead worker is detected by our own heartbeat
 * (jobs/recovery.ts, datasets/processing.ts), not by queue expiry.
 */
export interface QueueMessage {
  jobId: string;
  attempt: number;
}

/** A dataset's ingest or poisoning run, attempt `attempt`. */
export interface DatasetMessage {
  datasetId: string;
  attempt: number;
}

/** An uploaded model's check (queue `poison`, the trainer-run work beside training). */
export interface ModelMessage {
  modelId: string;
  attempt: number;
}

type Message<Q extends QueueName> = Q extends "ingest"
  ? DatasetMessage
  : Q extends "poison"
    ? DatasetMessage | ModelMessage
    : QueueMessage;
const EXPIRE_HOURS = 23; // pg-boss 10 caps expiry below 24 h
const WEBHOOK_QUEUE = "webhooks";

export class JobQueue {
  private readonly boss: PgBoss;
  private started = false;

  /** `gpuCounts`: the GPU counts offered; each has its queue (`gpu`, `gpu-4`, …). */
  constructor(
    databaseUrl: string,
    private readonly gpuCounts: readonly number[] = [1],
  ) {
    this.boss = new PgBoss({ connectionString: databaseUrl, schema: "pgboss", max: 4, supervise: true });
    this.boss.on("error", () => {}); // transient connection errors are retried by pg-boss itself
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.boss.start();
    for (const name of queuesFor(this.gpuCounts)) {
      if (!(await this.boss.getQueue(name)))
        await this.boss.createQueue(name, { name, retryLimit: 0, expireInHours: EXPIRE_HOURS });
    }
    this.started = true;
  }

  /**
   * Send one message per attempt: a duplicate send (e.g. two reapers) is dropped by the singleton
   * key. `resend` names a deliberate second message for the same attempt (a job handed back by a
   * worker that shut down), which must not be taken for a duplicate of the one being handled.
   */
  async enqueue<Q extends QueueName>(queue: Q, message: Message<Q>, resend?: string): Promise<void> {
    const id =
      "jobId" in message ? message.jobId : "datasetId" in message ? message.datasetId : message.modelId;
    await this.boss.send(queue, message, {
      singletonKey: resend ? `${id}:${message.attempt}:${resend}` : `${id}:${message.attempt}`,
      retryLimit: 0,
      expireInHours: EXPIRE_HOURS,
    });
  }

  async work<Q extends QueueName>(
    queue: Q,
    pollingIntervalSeconds: number,
    handler: (message: Message<Q>) => Promise<void>,
  ): Promise<string> {
    return this.boss.work<Message<Q>>(queue, { batchSize: 1, pollingIntervalSeconds }, async (jobs) => {
      for (const job of jobs) await handler(job.data);
    });
  }

  /**
   * Webhook deliveries ride their own queue, the one place pg-boss retries by itself: a failed
   * attempt comes back after `retryDelaySeconds`, doubling each time (retryBackoff), up to
   * `retryLimit` retries. The singleton key is the delivery id, so a delivery is queued once.
   */
  async sendDelivery(deliveryId: string, retry: { limit: number; delaySeconds: number }): Promise<void> {
    if (!(await this.boss.getQueue(WEBHOOK_QUEUE)))
      await this.boss.createQueue(WEBHOOK_QUEUE, { name: WEBHOOK_QUEUE, expireInHours: 1 });
    await this.boss.send(
      WEBHOOK_QUEUE,
      { deliveryId },
      {
        singletonKey: deliveryId,
        retryLimit: retry.limit,
        retryDelay: retry.delaySeconds,
        retryBackoff: true,
        expireInMinutes: 5,
      },
    );
  }

  /** Handle deliveries; the handler is told which attempt this is (0-based) of how many retries. */
  async workDeliveries(
    pollingIntervalSeconds: number,
    handler: (deliveryId: string, attempt: { retryCount: number; retryLimit: number }) => Promise<void>,
  ): Promise<string> {
    if (!(await this.boss.getQueue(WEBHOOK_QUEUE)))
      await this.boss.createQueue(WEBHOOK_QUEUE, { name: WEBHOOK_QUEUE, expireInHours: 1 });
    return this.boss.work<{ deliveryId: string }>(
      WEBHOOK_QUEUE,
      { batchSize: 1, pollingIntervalSeconds, includeMetadata: true },
      async (jobs) => {
        for (const job of jobs) await handler(job.data.deliveryId, job);
      },
    );
  }

  async stopDeliveries(): Promise<void> {
    await this.boss.offWork(WEBHOOK_QUEUE);
  }

  /** Stop taking messages from `queue` (messages being handled finish). */
  async stopWorking(queue: QueueName): Promise<void> {
    await this.boss.offWork(queue);
  }

  async stop(): Promise<void> {
    if (this.started) await this.boss.stop({ graceful: true, timeout: 5000, wait: true });
    this.started = false;
  }
}
