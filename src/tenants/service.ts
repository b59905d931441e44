import type { DataSource } from "typeorm";
import { isUuid } from "../db/datasets.ts";
import { createApiKey, createTenant, revokeApiKey, type Tenant, tenantForKey } from "../db/tenants.ts";
import { notFound } from "../errors.ts";

export type { Tenant };

/** Tenants and their API keys: who a key belongs to, and keys made or revoked by their tenant. */
export class TenantService {
  constructor(private readonly db: DataSource) {}

  /** The tenant of a live (not revoked) key, or null. */
  forKey(key: string): Promise<Tenant | null> {
    return tenantForKey(this.db, key);
  }

  createTenant(name: string): Promise<Tenant> {
    return createTenant(this.db, name);
  }

  createApiKey(tenantId: string, name: string) {
    return createApiKey(this.db, tenantId, name);
  }

  /** Revokes one of the tenant's keys; NOT_FOUND for an id no key can have (not a UUID). */
  revokeApiKey(tenantId: string, id: string): Promise<boolean> {
    if (!isUuid(id)) throw notFound("API key", id);
    return revokeApiKey(this.db, tenantId, id);
  }
}
