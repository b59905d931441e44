/** Relay-style paging: the cursors of the pages seen so far, and the Previous/Next controls. */
import { useState } from "preact/hooks";
import type { PageInfo } from "../schema.ts";

export interface Pages {
  /** The `after` argument of the current page (null: the first). */
  after: string | null;
  page: number;
  first(): void;
  back(): void;
  next(cursor: string | null): void;
}

export function usePages(): Pages {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  return {
    after: cursors[cursors.length - 1] ?? null,
    page: cursors.length,
    first: () => setCursors([null]),
    back: () => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)),
    next: (cursor) => setCursors((c) => [...c, cursor]),
  };
}

export function Pager({
  label,
  pages,
  pageInfo,
}: {
  label: string;
  pages: Pages;
  pageInfo: PageInfo | undefined;
}) {
  return (
    <nav class="pager" aria-label={label}>
      <button type="button" disabled={pages.page < 2} onClick={pages.back}>
        Previous page
      </button>
      <span>Page {pages.page}</span>
      <button
        type="button"
        disabled={!pageInfo?.hasNextPage}
        onClick={() => pages.next(pageInfo?.endCursor ?? null)}
      >
        Next page
      </button>
    </nav>
  );
}
