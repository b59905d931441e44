import type { DataSource } from "typeorm";
import { type AuditRow, auditEventsOf, insertAuditEvent, type NewAuditEvent } from "../db/audit.ts";
import { badInput } from "../errors.ts";

export type { AuditRow, NewAuditEvent };

/** The tenant's audit log of key, dataset and job mutations (who, what, when). */
export class AuditLog {
  constructor(private readonly db: DataSource) {}

  record(event: NewAuditEvent): Promise<void> {
    return insertAuditEvent(this.db, event);
  }

  /** One page, newest first (`first` + 1 rows: the extra one says a next page exists). */
  page(tenantId: string, first: number, after?: string | null): Promise<AuditRow[]> {
    if (after != null && !/^[1-9]\d{0,18}$/.test(after))
      throw badInput("after is not a cursor this API returned", "after");
    return auditEventsOf(this.db, tenantId, first, after ?? undefined);
  }
}
