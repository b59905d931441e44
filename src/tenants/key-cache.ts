import type { Tenant } from "../db/tenants.ts";

/** Where revocations of API keys are heard (a LISTEN connection); also wakes everyone after a reconnect. */
export interface KeyRevocations {
  subscribe(keyId: string, onRevoked: () => void): () => void;
}

interface Entry {
  tenant: Tenant & { keyId: string };
  /** The key's own expiry (ms), null when it has none. */
  expiresAt: number | null;
  /** Until when this entry may answer without asking the database (ms). */
  freshUntil: number;
  unsubscribe: () => void;
}

/**
 * Key hash → tenant, for a few seconds: a request (or a refusal) then costs no SQL. A revoked key
 * is forgotten at once on every replica (its NOTIFY); were that message lost (the LISTEN
 * connection down), the reconnect forgets every key, and at worst an entry lives `ttlSeconds`.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlSeconds: number,
    private readonly revocations: KeyRevocations,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(hash: string): (Tenant & { keyId: string }) | undefined {
    const entry = this.entries.get(hash);
    if (!entry) return undefined;
    const now = this.now();
    if (now >= entry.freshUntil || (entry.expiresAt !== null && now >= entry.expiresAt)) {
      this.drop(hash);
      return undefined;
    }
    return entry.tenant;
  }

  set(hash: string, tenant: Tenant & { keyId: string }, expiresAt: Date | null): void {
    if (this.ttlSeconds <= 0) return;
    this.drop(hash);
    // Oldest first out: Map keeps insertion order.
    if (this.entries.size >= this.maxEntries) this.drop(this.entries.keys().next().value as string);
    this.entries.set(hash, {
      tenant,
      expiresAt: expiresAt ? new Date(expiresAt).getTime() : null,
      freshUntil: this.now() + this.ttlSeconds * 1000,
      unsubscribe: this.revocations.subscribe(tenant.keyId, () => this.forgetKey(tenant.keyId)),
    });
  }

  /** Forgets every entry of this key id (revoked here or elsewhere). */
  forgetKey(keyId: string): void {
    for (const [hash, entry] of this.entries) if (entry.tenant.keyId === keyId) this.drop(hash);
  }

  private drop(hash: string): void {
    const entry = this.entries.get(hash);
    if (!entry) return;
    this.entries.delete(hash);
    entry.unsubscribe();
  }
}
