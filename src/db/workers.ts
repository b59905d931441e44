import { type Queryable, sql } from "./sql.ts";

/** The worker registry: which queues each running worker serves, and when it last said so. */

export async function registerWorker(db: Queryable, name: string, queues: string[]): Promise<void> {
  await sql(
    db,
    `INSERT INTO workers (name, queues) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET queues = EXCLUDED.queues, heartbeat_at = now()`,
    [name, queues],
  );
}

export async function workerHeartbeat(db: Queryable, name: string): Promise<void> {
  await sql(db, "UPDATE workers SET heartbeat_at = now() WHERE name = $1", [name]);
}

export async function unregisterWorker(db: Queryable, name: string): Promise<void> {
  await sql(db, "DELETE FROM workers WHERE name = $1", [name]);
}

/** Drops the rows of workers silent for `seconds` (killed, never unregistered); returns how many. */
export async function forgetLostWorkers(db: Queryable, seconds: number): Promise<number> {
  const rows = await sql(
    db,
    "DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1) RETURNING name",
    [seconds],
  );
  return rows.length;
}

/** Live workers per queue (heartbeat within `staleAfterSeconds`): a read, as launches and reads need. */
export async function liveWorkersByQueue(
  db: Queryable,
  staleAfterSeconds: number,
): Promise<Map<string, number>> {
  const rows = await sql<{ queue: string; n: string }>(
    db,
    `SELECT q AS queue, count(*) AS n FROM workers, unnest(queues) AS q
     WHERE heartbeat_at >= now() - make_interval(secs => $1) GROUP BY q`,
    [staleAfterSeconds],
  );
  return new Map(rows.map((r) => [r.queue, Number(r.n)]));
}
