import { type Queryable, sql } from "./sql.ts";

/**
 * The rate limiter's shared counters: each API replica writes, at most once a second, how many
 * requests each tenant made to it in the current window, and reads what the other replicas wrote.
 */

export interface WindowCount {
  tenantId: string;
  windowStart: number;
  count: number;
}

/** Upserts this replica's counts (one statement) and returns the other replicas' sums per tenant. */
export async function syncWindowCounts(
  db: Queryable,
  replica: string,
  windowStart: number,
  counts: WindowCount[],
): Promise<Map<string, number>> {
  if (counts.length > 0)
    await sql(
      db,
      `INSERT INTO rate_limit_counts (tenant_id, window_start, replica, count)
       SELECT t, w, $1, c FROM unnest($2::uuid[], $3::bigint[], $4::int[]) AS u(t, w, c)
       ON CONFLICT (tenant_id, window_start, replica) DO UPDATE SET count = EXCLUDED.count`,
      [replica, counts.map((c) => c.tenantId), counts.map((c) => c.windowStart), counts.map((c) => c.count)],
    );
  const others = new Map<string, number>();
  const rows = await sql<{ tenant_id: string; n: string }>(
    db,
    `SELECT tenant_id, SUM(count) AS n FROM rate_limit_counts
     WHERE window_start = $1 AND replica <> $2 GROUP BY tenant_id`,
    [windowStart, replica],
  );
  for (const row of rows) others.set(row.tenant_id, Number(row.n));
  return others;
}

/** Drops windows that ended before `windowStart`. */
export async function pruneWindowCounts(db: Queryable, windowStart: number): Promise<void> {
  await sql(db, "DELETE FROM rate_limit_counts WHERE window_start < $1", [windowStart]);
}
