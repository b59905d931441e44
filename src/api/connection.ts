import { badInput } from "../errors.ts";
import { INPUT_LIMITS, isUuid } from "../input-limits.ts";

/** Relay cursors: opaque base64 of (created_at, id), the keyset the lists are ordered by. */
export function encodeCursor(row: { created_at: Date; id: string }): string {
  return Buffer.from(JSON.stringify([row.created_at.toISOString(), row.id])).toString("base64url");
}

export function decodeCursor(
  cursor: string | null | undefined,
): { createdAt: string; id: string } | undefined {
  if (!cursor) return undefined;
  try {
    if (cursor.length > INPUT_LIMITS.cursorChars) throw new Error();
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString()) as [string, string];
    if (typeof createdAt !== "string" || !isUuid(id) || Number.isNaN(Date.parse(createdAt)))
      throw new Error();
    return { createdAt, id };
  } catch {
    throw badInput("after is not a cursor this API returned", "after");
  }
}

export function pageSize(first: number | null | undefined): number {
  const n = first ?? 20;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw badInput("first must be between 1 and 100", "first");
  return n;
}

/** Rows fetched with LIMIT first + 1 → a connection (the extra row only says there is a next page). */
export function connection<T extends { created_at: Date; id: string }>(rows: T[], first: number) {
  const page = rows.slice(0, first);
  return {
    edges: page.map((node) => ({ cursor: encodeCursor(node), node })),
    pageInfo: {
      hasNextPage: rows.length > first,
      endCursor: page.length ? encodeCursor(page[page.length - 1] as T) : null,
    },
  };
}

/** Cursors over a ranking (health.suspicious): opaque base64 of the rank. */
export function encodeRankCursor(rank: number): string {
  return Buffer.from(`rank:${rank}`).toString("base64url");
}

export function decodeRankCursor(cursor: string | null | undefined): number {
  if (!cursor) return 0;
  const match =
    cursor.length <= INPUT_LIMITS.cursorChars
      ? /^rank:([1-9][0-9]{0,8})$/.exec(Buffer.from(cursor, "base64url").toString())
      : null;
  if (!match) throw badInput("after is not a cursor this API returned", "after");
  return Number(match[1]);
}
