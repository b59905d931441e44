import { createHash, randomBytes } from "node:crypto";
import { type Queryable, sql } from "./sql.ts";

/** SQL for tenants and API keys. Keys are stored as sha256 hashes; the key itself is shown once. */

export interface Tenant {
  id: string;
  name: string;
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

export async function createTenant(db: Queryable, name: string): Promise<Tenant> {
  const rows = await sql<Tenant>(db, "INSERT INTO tenants (name) VALUES ($1) RETURNING id, name", [name]);
  return rows[0] as Tenant;
}

export async function createApiKey(
  db: Queryable,
  tenantId: string,
  name: string,
): Promise<{ id: string; name: string; key: string }> {
  const key = `td_${randomBytes(24).toString("base64url")}`;
  const rows = await sql<{ id: string; name: string }>(
    db,
    "INSERT INTO api_keys (tenant_id, name, key_hash, prefix) VALUES ($1, $2, $3, $4) RETURNING id, name",
    [tenantId, name, hashKey(key), key.slice(0, 7)],
  );
  const row = rows[0] as { id: string; name: string };
  return { id: row.id, name: row.name, key };
}

export async function tenantForKey(db: Queryable, key: string): Promise<Tenant | null> {
  const rows = await sql<Tenant>(
    db,
    `SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
    [hashKey(key)],
  );
  return rows[0] ?? null;
}

export async function revokeApiKey(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id",
    [id, tenantId],
  );
  return rows.length > 0;
}
