import type { DataSource } from "typeorm";
import { createApiKey, createTenant, revokeApiKey, type Tenant, tenantForKey } from "../db/tenants.ts";
import { checkString, INPUT_LIMITS, parseId } from "../input-limits.ts";

export type { Tenant };

/** Tenants and their API keys: who a key belongs to, and keys made or revoked by their tenant. */
export class TenantService {
  constructor(private readonly db: DataSource) {}

  /** The tenant of a live (not revoked) key, or null. */
  forKey(key: string): Promise<Tenant | null> {
    return tenantForKey(this.db, key);
  }

  createTenant(name: string): Promise<Tenant> {
    return createTenant(this.db, checkString(name, "name", INPUT_LIMITS.tenantNameChars));
  }

  createApiKey(tenantId: string, name: string) {
    return createApiKey(this.db, tenantId, checkString(name, "name", INPUT_LIMITS.apiKeyNameChars));
  }

  /** Revokes one of the tenant's keys; NOT_FOUND for an id no key can have (not a UUID). */
  revokeApiKey(tenantId: string, id: string): Promise<boolean> {
    return revokeApiKey(this.db, tenantId, parseId("API key", id));
  }
}
