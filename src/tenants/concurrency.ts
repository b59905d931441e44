/**
 * Requests of one tenant in flight on this replica, at most `max` at once: a tenant firing many
 * parallel requests holds at most `max` of the process's database connections and event-loop
 * turns, and the rest are refused at once (429) instead of queueing in front of other tenants.
 */
export class ConcurrencyLimiter {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** A release function when the request may proceed (call it once, when it ends), else null. */
  enter(tenantId: string): (() => void) | null {
    if (this.max <= 0) return () => {};
    const now = this.inFlight.get(tenantId) ?? 0;
    if (now >= this.max) return null;
    this.inFlight.set(tenantId, now + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(tenantId) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(tenantId);
      else this.inFlight.set(tenantId, left);
    };
  }

  get maxInFlight(): number {
    return this.max;
  }
}
