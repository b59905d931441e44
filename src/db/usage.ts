import { type Queryable, sql } from "./sql.ts";

/** What a tenant holds, and its quota overrides (NULL: the deployment's default). */

export interface Usage {
  /** Raw uploads as declared (reserved at create) + canonical datasets + job artifacts. */
  bytes: number;
  /** Datasets not deleted, in any state. */
  datasets: number;
  /** Jobs queued, starting, running, uploading or being cancelled. */
  liveJobs: number;
}

export type QuotaOverrides = { [K in keyof Usage]: number | null };

/**
 * Locks the tenant's row until the caller's transaction ends, so that two requests of one tenant
 * cannot both pass a quota check for room only one of them fits in.
 */
export function lockTenant(tx: Queryable, tenantId: string): Promise<QuotaOverrides> {
  return readOverrides(tx, tenantId, "FOR UPDATE");
}

export function quotaOverrides(db: Queryable, tenantId: string): Promise<QuotaOverrides> {
  return readOverrides(db, tenantId, "");
}

async function readOverrides(
  db: Queryable,
  tenantId: string,
  lock: "FOR UPDATE" | "",
): Promise<QuotaOverrides> {
  const rows = await sql<{ bytes: string | null; datasets: number | null; live_jobs: number | null }>(
    db,
    `SELECT quota_bytes AS bytes, quota_datasets AS datasets, quota_live_jobs AS live_jobs
     FROM tenants WHERE id = $1 ${lock}`,
    [tenantId],
  );
  const row = rows[0];
  return {
    bytes: row?.bytes == null ? null : Number(row.bytes),
    datasets: row?.datasets ?? null,
    liveJobs: row?.live_jobs ?? null,
  };
}

export async function setQuotaOverrides(db: Queryable, tenantId: string, quota: Partial<QuotaOverrides>) {
  await sql(
    db,
    `UPDATE tenants SET quota_bytes = COALESCE($2, quota_bytes), quota_datasets = COALESCE($3, quota_datasets),
       quota_live_jobs = COALESCE($4, quota_live_jobs) WHERE id = $1`,
    [tenantId, quota.bytes ?? null, quota.datasets ?? null, quota.liveJobs ?? null],
  );
}

/** A canonical dataset's bytes from its shape (uint8 images, int64 labels), 0 before it is READY. */
const CANONICAL_BYTES = "COALESCE(count::bigint * height * width * channels + count::bigint * 8, 0)";

export async function tenantUsage(db: Queryable, tenantId: string): Promise<Usage> {
  const rows = await sql<{ bytes: string; datasets: string; live_jobs: string }>(
    db,
    `SELECT
       (SELECT COALESCE(SUM(size_bytes + ${CANONICAL_BYTES}), 0) FROM datasets WHERE tenant_id = $1 AND deleted_at IS NULL)
       + (SELECT COALESCE(SUM(size_bytes), 0) FROM artifacts WHERE tenant_id = $1)
       + (SELECT COALESCE(SUM(size_bytes), 0) FROM models WHERE tenant_id = $1 AND deleted_at IS NULL) AS bytes,
       (SELECT count(*) FROM datasets WHERE tenant_id = $1 AND deleted_at IS NULL) AS datasets,
       (SELECT count(*) FROM training_jobs WHERE tenant_id = $1
          AND status IN ('VALIDATING','QUEUED','STARTING','RUNNING','UPLOADING','CANCELLING')) AS live_jobs`,
    [tenantId],
  );
  const row = rows[0];
  return {
    bytes: Number(row?.bytes ?? 0),
    datasets: Number(row?.datasets ?? 0),
    liveJobs: Number(row?.live_jobs ?? 0),
  };
}
