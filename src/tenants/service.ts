import type { DataSource } from "typeorm";
import {
  type ApiKeyRow,
  apiKeysOf,
  createApiKey,
  createTenant,
  hashKey,
  revokeApiKey,
  type Tenant,
  tenantForKey,
  touchApiKeys,
} from "../db/tenants.ts";
import { badInput } from "../errors.ts";
import { checkString, INPUT_LIMITS, parseId } from "../input-limits.ts";
import { KeyCache, type KeyRevocations } from "./key-cache.ts";

export type { ApiKeyRow, Tenant };

/** Tenants and their API keys: who a key belongs to, and keys made or revoked by their tenant. */
export class TenantService {
  /** Keys used since the last flush: lastUsedAt is written in batches, never once per request. */
  private readonly used = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private cache: KeyCache | undefined;

  constructor(private readonly db: DataSource) {}

  /**
   * Answers known keys from memory for `ttlSeconds` (API processes), forgetting a key as soon as
   * `revocations` says it was revoked anywhere.
   */
  cacheKeys(ttlSeconds: number, revocations: KeyRevocations): void {
    this.cache = ttlSeconds > 0 ? new KeyCache(ttlSeconds, revocations) : undefined;
  }

  /** The tenant of a live (not revoked, not expired) key, with the key's id (the audit log's actor), or null. */
  async forKey(key: string): Promise<Tenant | null> {
    const hash = hashKey(key);
    let tenant = this.cache?.get(hash);
    if (!tenant) {
      const found = await tenantForKey(this.db, key);
      if (!found) return null;
      tenant = { id: found.id, name: found.name, keyId: found.keyId };
      this.cache?.set(hash, tenant, found.expiresAt);
    }
    this.used.add(tenant.keyId);
    return tenant;
  }

  /** Writes the keys' last use every `seconds` (lastUsedAt is as fresh as that). */
  startKeyUseFlush(seconds = 5): void {
    this.timer ??= setInterval(() => {
      this.flushKeyUse().catch(() => {});
    }, seconds * 1000);
    this.timer.unref();
  }

  async flushKeyUse(): Promise<void> {
    const ids = [...this.used];
    this.used.clear();
    await touchApiKeys(this.db, ids);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flushKeyUse().catch(() => {});
  }

  apiKeys(tenantId: string): Promise<ApiKeyRow[]> {
    return apiKeysOf(this.db, tenantId);
  }

  createTenant(name: string): Promise<Tenant> {
    return createTenant(this.db, checkString(name, "name", INPUT_LIMITS.tenantNameChars));
  }

  createApiKey(tenantId: string, name: string, expiresAt?: Date | null) {
    if (expiresAt != null && !(expiresAt.getTime() > Date.now()))
      throw badInput("expiresAt must be a time in the future", "expiresAt");
    return createApiKey(
      this.db,
      tenantId,
      checkString(name, "name", INPUT_LIMITS.apiKeyNameChars),
      expiresAt,
    );
  }

  /** Revokes one of the tenant's keys; NOT_FOUND for an id no key can have (not a UUID). */
  async revokeApiKey(tenantId: string, id: string): Promise<boolean> {
    const revoked = await revokeApiKey(this.db, tenantId, parseId("API key", id));
    this.cache?.forgetKey(id.toLowerCase());
    return revoked;
  }
}
