import { createHash } from "node:crypto";
import type { Pool } from "pg";
import type { DataSource, QueryRunner } from "typeorm";

/** A connection or an open transaction. */
export type Queryable = DataSource | QueryRunner;

/**
 * Run one SQL statement and return its rows. Goes through TypeORM's structured result so that
 * INSERT/UPDATE/DELETE ... RETURNING all give rows (plain `query()` wraps UPDATE results differently).
 */
export async function sql<T = Record<string, unknown>>(
  db: Queryable,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  if ("manager" in db && "isTransactionActive" in db) {
    return (await (db as QueryRunner).query(text, params, true)).records as T[];
  }
  // Outside a transaction, straight to the driver's pool as a named statement: each connection
  // parses and plans it once, and TypeORM's per-query runner is skipped (the API's hot reads).
  const pool = poolOf(db as DataSource);
  if (pool) {
    const name = statementName(text);
    const result = await pool.query(name ? { name, text, values: params } : { text, values: params });
    return result.rows as T[];
  }
  const runner = (db as DataSource).createQueryRunner();
  try {
    return (await runner.query(text, params, true)).records as T[];
  } finally {
    await runner.release();
  }
}

/** Run `fn` in a transaction on its own connection. */
export async function transaction<T>(db: DataSource, fn: (tx: QueryRunner) => Promise<T>): Promise<T> {
  const runner = db.createQueryRunner();
  await runner.connect();
  try {
    return await inNewTransaction(runner, fn);
  } finally {
    await runner.release();
  }
}

async function inNewTransaction<T>(runner: QueryRunner, fn: (tx: QueryRunner) => Promise<T>): Promise<T> {
  await runner.startTransaction();
  try {
    const result = await fn(runner);
    await runner.commitTransaction();
    return result;
  } catch (error) {
    await runner.rollbackTransaction();
    throw error;
  }
}

/**
 * Run `fn` atomically: in a new transaction on a DataSource, or on a QueryRunner (inside the
 * caller's transaction when one is open, else in one of its own).
 */
export async function atomically<T>(db: Queryable, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  if (!("manager" in db && "isTransactionActive" in db)) return transaction(db as DataSource, fn);
  const runner = db as QueryRunner;
  if (runner.isTransactionActive) return fn(runner);
  return inNewTransaction(runner, fn);
}

/** The pg pool behind a DataSource (TypeORM's postgres driver keeps it as `master`). */
function poolOf(db: DataSource): Pool | undefined {
  const master = (db.driver as unknown as { master?: Pool }).master;
  return master && typeof master.query === "function" ? master : undefined;
}

const statementNames = new Map<string, string>();
/** Statements named at most: texts built with varying parts beyond this run unnamed. */
const MAX_NAMED_STATEMENTS = 500;

/** A stable name per statement text, or undefined once MAX_NAMED_STATEMENTS are named. */
function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (!name && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `td_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    statementNames.set(text, name);
  }
  return name;
}
