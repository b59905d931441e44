/**
 * Webhooks as the API offers them: create (the signing secret is returned once), list, rotate
 * the secret (the previous one keeps signing for a grace period), delete, and each one's
 * deliveries. URLs are checked when created (scheme, no credentials, a host that resolves to
 * allowed addresses) and again at every delivery (post.ts).
 */
import type { DataSource } from "typeorm";
import {
  countWebhooks,
  type DeliveryRow,
  deleteWebhook,
  deliveriesOf,
  getWebhook,
  insertWebhook,
  listWebhooks,
  rotateSecret,
  type WebhookEvent,
  type WebhookRow,
} from "../db/webhooks.ts";
import { badInput, notFound, quotaExceeded } from "../errors.ts";
import { checkString } from "../input-limits.ts";
import type { AddressPolicy } from "./address-policy.ts";
import { checkedAddresses, type Resolve, systemResolve, WebhookRefused } from "./post.ts";
import { encryptSecret, newSecret } from "./secrets.ts";

export type { DeliveryRow, WebhookEvent, WebhookRow };

export const WEBHOOK_EVENTS: readonly WebhookEvent[] = [
  "JOB_SUCCEEDED",
  "JOB_FAILED",
  "JOB_CANCELLED",
  "DATASET_READY",
  "DATASET_FAILED",
  "STUDY_DONE",
];
const MAX_URL_CHARS = 2048;
export const MAX_WEBHOOKS_PER_TENANT = 20;
/** How long a rotated-out secret still signs deliveries (receivers switch over meanwhile). */
export const ROTATION_GRACE_SECONDS = 24 * 3600;

export interface WebhookSettings {
  /** The service's signing secret: the key that encrypts webhook secrets derives from it. */
  serviceSecret: string;
  policy: AddressPolicy;
  /** Plain http:// endpoints (TRAPDOOR_WEBHOOK_ALLOW_HTTP; https only otherwise). */
  allowHttp: boolean;
  resolve?: Resolve;
}

export class WebhookService {
  constructor(
    private readonly db: DataSource,
    private readonly settings: WebhookSettings,
  ) {}

  list(tenantId: string): Promise<WebhookRow[]> {
    return listWebhooks(this.db, tenantId);
  }

  get(tenantId: string, id: string): Promise<WebhookRow | null> {
    return getWebhook(this.db, tenantId, id);
  }

  deliveries(webhook: WebhookRow, first: number, after?: { createdAt: string; id: string }) {
    return deliveriesOf(this.db, webhook.id, first, after);
  }

  async create(tenantId: string, input: { url: string; events: WebhookEvent[] }) {
    const url = await this.checkUrl(input.url);
    const events = [...new Set(input.events ?? [])];
    if (events.length === 0) throw badInput("name at least one event", "events");
    for (const event of events)
      if (!WEBHOOK_EVENTS.includes(event)) throw badInput(`unknown event ${event}`, "events");
    if ((await countWebhooks(this.db, tenantId)) >= MAX_WEBHOOKS_PER_TENANT)
      throw quotaExceeded(
        `a tenant may have ${MAX_WEBHOOKS_PER_TENANT} webhooks`,
        "webhooks",
        MAX_WEBHOOKS_PER_TENANT,
      );
    const secret = newSecret();
    const webhook = await insertWebhook(this.db, {
      tenantId,
      url: url.toString(),
      events,
      secretCiphertext: encryptSecret(secret, this.settings.serviceSecret),
    });
    return { webhook, secret };
  }

  async rotate(tenantId: string, id: string) {
    const current = await getWebhook(this.db, tenantId, id);
    if (!current) throw notFound("webhook", id);
    const secret = newSecret();
    const webhook = await rotateSecret(
      this.db,
      id,
      encryptSecret(secret, this.settings.serviceSecret),
      ROTATION_GRACE_SECONDS,
    );
    if (!webhook) throw notFound("webhook", id);
    return { webhook, secret };
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    if (!(await deleteWebhook(this.db, tenantId, id))) throw notFound("webhook", id);
    return true;
  }

  private async checkUrl(raw: string): Promise<URL> {
    checkString(raw, "url", MAX_URL_CHARS);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw badInput("url is not a URL", "url");
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && this.settings.allowHttp))
      throw badInput(
        this.settings.allowHttp
          ? "url must be http or https"
          : "url must be https (this deployment refuses plain http)",
        "url",
      );
    if (url.username || url.password) throw badInput("url must not carry credentials", "url");
    try {
      await checkedAddresses(url, this.settings.policy, this.settings.resolve ?? systemResolve);
    } catch (error) {
      if (error instanceof WebhookRefused) throw badInput(error.message, "url");
      throw error;
    }
    return url;
  }
}
