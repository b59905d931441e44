/**
 * Delivers the outbox. A relay hands every new delivery row to the `webhooks` queue (woken by the
 * outbox's NOTIFY, and every few seconds in case one was missed); a queue handler POSTs it,
 * signed, with the delivery id in a header for de-duplication, records the attempt, and throws
 * on failure so that pg-boss retries it with exponential backoff. After the last retry the
 * delivery is FAILED. Any number of processes may run this: the relay locks rows it claims, the
 * queue hands each message to one handler.
 */
import type { DataSource } from "typeorm";
import { ChannelListener } from "../db/listener.ts";
import {
  claimUnqueued,
  type DeliveryRow,
  deliveryById,
  getWebhook,
  OUTBOX_KEY,
  recordAttempt,
  unqueue,
  WEBHOOK_CHANNEL,
} from "../db/webhooks.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import type { AddressPolicy } from "./address-policy.ts";
import { postJson, type Resolve } from "./post.ts";
import { decryptSecret, signatureHeader } from "./secrets.ts";

export interface DispatcherOptions {
  databaseUrl: string;
  serviceSecret: string;
  policy: AddressPolicy;
  resolve?: Resolve;
  /** Retries after the first attempt, and the first retry's delay (it doubles each time). */
  retryLimit: number;
  retryDelaySeconds: number;
  timeoutMs?: number;
  relayEveryMs?: number;
}

const RELAY_BATCH = 100;

export class WebhookDispatcher {
  private listener: ChannelListener | null = null;
  private timer: NodeJS.Timeout | null = null;
  private relaying: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(
    private readonly db: DataSource,
    private readonly queue: JobQueue,
    private readonly options: DispatcherOptions,
  ) {}

  async start(): Promise<void> {
    this.listener = new ChannelListener(this.options.databaseUrl, WEBHOOK_CHANNEL, {
      applicationName: "trapdoor-webhooks",
    });
    await this.listener.start();
    this.listener.subscribe(OUTBOX_KEY, () => this.relay());
    this.timer = setInterval(() => this.relay(), this.options.relayEveryMs ?? 5000);
    await this.queue.workDeliveries(0.5, (id, attempt) => this.deliver(id, attempt));
    this.relay();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.queue.stopDeliveries().catch(() => {});
    await this.relaying;
    await this.listener?.stop();
  }

  /** Move unqueued outbox rows to the queue; one pass at a time, another if woken meanwhile. */
  relay(): void {
    if (this.stopped) return;
    if (this.relaying) {
      this.again = true;
      return;
    }
    this.relaying = (async () => {
      do {
        this.again = false;
        for (;;) {
          const claimed = await claimUnqueued(this.db, RELAY_BATCH);
          for (const { id } of claimed) {
            try {
              await this.queue.sendDelivery(id, {
                limit: this.options.retryLimit,
                delaySeconds: this.options.retryDelaySeconds,
              });
            } catch {
              await unqueue(this.db, id); // the next pass sends it
            }
          }
          if (claimed.length < RELAY_BATCH) break;
        }
      } while (this.again && !this.stopped);
    })()
      .catch(() => {}) // the timer tries again
      .finally(() => {
        this.relaying = null;
      });
  }

  /** One attempt; throws when it failed and a retry remains, so that the queue retries it. */
  async deliver(deliveryId: string, attempt: { retryCount: number; retryLimit: number }): Promise<void> {
    const delivery = await deliveryById(this.db, deliveryId);
    if (delivery?.status !== "PENDING") return;
    const webhook = await getWebhook(this.db, null, delivery.webhook_id);
    if (!webhook) {
      await recordAttempt(this.db, delivery.id, {
        status: "FAILED",
        error: "the webhook was deleted",
        statusCode: null,
      });
      return;
    }
    const secrets = [decryptSecret(webhook.secret_ciphertext, this.options.serviceSecret)];
    if (
      webhook.previous_secret_ciphertext &&
      webhook.previous_secret_expires_at &&
      webhook.previous_secret_expires_at > new Date()
    )
      secrets.push(decryptSecret(webhook.previous_secret_ciphertext, this.options.serviceSecret));
    const body = JSON.stringify(eventBody(delivery));
    let error: string | null = null;
    let statusCode: number | null = null;
    try {
      const result = await postJson(
        webhook.url,
        body,
        {
          "user-agent": "trapdoor-webhooks/1",
          "trapdoor-signature": signatureHeader(secrets, Math.floor(Date.now() / 1000), body),
          "trapdoor-delivery-id": delivery.id,
          "trapdoor-event": delivery.event,
        },
        {
          policy: this.options.policy,
          resolve: this.options.resolve,
          timeoutMs: this.options.timeoutMs ?? 10_000,
        },
      );
      statusCode = result.statusCode;
      if (statusCode >= 300 && statusCode < 400) error = `HTTP ${statusCode}: redirects are not followed`;
      else if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
    } catch (failure) {
      error = failure instanceof Error ? failure.message : String(failure);
    }
    const last = attempt.retryCount >= attempt.retryLimit;
    await recordAttempt(this.db, delivery.id, {
      status: error === null ? "DELIVERED" : last ? "FAILED" : "PENDING",
      error,
      statusCode,
    });
    if (error !== null && !last) throw new Error(error);
  }
}

/** The JSON body of a delivery: its id, the event, when it happened and the event's data. */
export function eventBody(delivery: DeliveryRow): Record<string, unknown> {
  return { id: delivery.id, event: delivery.event, createdAt: delivery.created_at, data: delivery.payload };
}
