import type { DataSource } from "typeorm";
import type { Config } from "../config.ts";
import type { Queryable } from "../db/sql.ts";
import { lockTenant, type QuotaOverrides, quotaOverrides, tenantUsage, type Usage } from "../db/usage.ts";
import { quotaExceeded } from "../errors.ts";

export type { Usage };
export type Quota = Usage;

/** The deployment's per-tenant defaults, from its configured limits. */
export const quotaDefaults = (limits: Config["limits"]): Quota => ({
  bytes: limits.tenantMaxBytes,
  datasets: limits.tenantMaxDatasets,
  liveJobs: limits.maxLiveJobsPerTenant,
});

const UNITS: Record<keyof Usage, (n: number) => string> = {
  bytes: (n) => `${n} bytes`,
  datasets: (n) => `${n} datasets`,
  liveJobs: (n) => `${n} live jobs`,
};

const HINTS: Record<keyof Usage, string> = {
  bytes: "delete datasets or jobs you no longer need",
  datasets: "delete datasets you no longer need",
  liveJobs: "wait for one to finish or cancel one",
};

/**
 * Per-tenant quotas: bytes stored, datasets and live jobs. A request reserves what it will take
 * in the same transaction that records it, under a lock on the tenant's row, so QUOTA_EXCEEDED
 * comes before anything is stored and concurrent requests cannot overshoot together.
 */
export class QuotaService {
  constructor(
    private readonly db: DataSource,
    private readonly defaults: Quota,
  ) {}

  usage(tenantId: string): Promise<Usage> {
    return tenantUsage(this.db, tenantId);
  }

  async quota(tenantId: string): Promise<Quota> {
    return this.withDefaults(await quotaOverrides(this.db, tenantId));
  }

  /** Inside `tx`: refuse unless `want` more fits in the tenant's quota (the lock lasts until `tx` ends). */
  async reserve(tx: Queryable, tenantId: string, want: Partial<Usage>): Promise<void> {
    const quota = this.withDefaults(await lockTenant(tx, tenantId));
    const usage = await tenantUsage(tx, tenantId);
    for (const [name, more] of Object.entries(want) as [keyof Usage, number][]) {
      if (!more) continue;
      if (usage[name] + more > quota[name])
        throw quotaExceeded(
          `this needs ${UNITS[name](more)} more; you use ${UNITS[name](usage[name])} of your ${UNITS[name](quota[name])}: ${HINTS[name]}`,
          name,
          quota[name],
        );
    }
  }

  /** Bytes the tenant may still store (what a dataset being decoded may grow by). */
  async bytesLeft(tenantId: string): Promise<number> {
    const [usage, quota] = await Promise.all([this.usage(tenantId), this.quota(tenantId)]);
    return Math.max(0, quota.bytes - usage.bytes);
  }

  private withDefaults(overrides: QuotaOverrides): Quota {
    return {
      bytes: overrides.bytes ?? this.defaults.bytes,
      datasets: overrides.datasets ?? this.defaults.datasets,
      liveJobs: overrides.liveJobs ?? this.defaults.liveJobs,
    };
  }
}
