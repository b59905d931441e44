import { createHash, randomBytes } from "node:crypto";
import { type Queryable, sql } from "./sql.ts";

/** SQL for tenants and API keys. Keys are stored as sha256 hashes; the key itself is shown once. */

export interface Tenant {
  id: string;
  name: string;
  /** The API key this request authenticated with (absent outside requests). */
  keyId?: string;
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

export async function createTenant(db: Queryable, name: string): Promise<Tenant> {
  const rows = await sql<Tenant>(db, "INSERT INTO tenants (name) VALUES ($1) RETURNING id, name", [name]);
  return rows[0] as Tenant;
}

export interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  expires_at: Date | null;
  revoked_at: Date | null;
}

export async function createApiKey(
  db: Queryable,
  tenantId: string,
  name: string,
  expiresAt: Date | null = null,
): Promise<{ id: string; name: string; key: string; expiresAt: Date | null }> {
  const key = `td_${randomBytes(24).toString("base64url")}`;
  const rows = await sql<{ id: string; name: string }>(
    db,
    "INSERT INTO api_keys (tenant_id, name, key_hash, prefix, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id, name",
    [tenantId, name, hashKey(key), key.slice(0, 7), expiresAt],
  );
  const row = rows[0] as { id: string; name: string };
  return { id: row.id, name: row.name, key, expiresAt };
}

/** Every replica LISTENs here: the payload is the id of a key just revoked (caches drop it). */
export const API_KEY_REVOKED_CHANNEL = "trapdoor_api_key_revoked";

/** The tenant of a live key (not revoked, not expired), with the key's id and expiry. */
export async function tenantForKey(
  db: Queryable,
  key: string,
): Promise<(Tenant & { keyId: string; expiresAt: Date | null }) | null> {
  const rows = await sql<Tenant & { keyId: string; expiresAt: Date | null }>(
    db,
    `SELECT t.id, t.name, k.id AS "keyId", k.expires_at AS "expiresAt" FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())`,
    [hashKey(key)],
  );
  return rows[0] ?? null;
}

/** A tenant's keys, newest first (revoked and expired ones included: they explain a 401). */
export function apiKeysOf(db: Queryable, tenantId: string): Promise<ApiKeyRow[]> {
  return sql<ApiKeyRow>(
    db,
    `SELECT id, name, prefix, created_at, last_used_at, expires_at, revoked_at FROM api_keys
     WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC`,
    [tenantId],
  );
}

/** Records that these keys were used (batched: one statement for every key used since the last call). */
export async function touchApiKeys(db: Queryable, ids: string[]): Promise<void> {
  if (ids.length > 0)
    await sql(db, "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])", [ids]);
}

/** Revokes a key and tells every replica (NOTIFY, in the same statement) to forget it. */
export async function revokeApiKey(db: Queryable, tenantId: string, id: string): Promise<boolean> {
  const rows = await sql(
    db,
    `WITH revoked AS (
       UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id)
     SELECT pg_notify($3, id::text) FROM revoked`,
    [id, tenantId, API_KEY_REVOKED_CHANNEL],
  );
  return rows.length > 0;
}
