import type { DataSource } from "typeorm";
import { createApiKey, createTenant, revokeApiKey, type Tenant, tenantForKey } from "../db/tenants.ts";

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

  revokeApiKey(tenantId: string, id: string): Promise<boolean> {
    return revokeApiKey(this.db, tenantId, id);
  }
}
