import pg from "pg";

/**
 * One dedicated LISTEN connection per process, fanning notifications out to in-process subscribers
 * by payload (for the job channel: the job id). Pooled connections cannot LISTEN (a notification
 * reaches only the session that listens), hence a plain `pg.Client` of its own.
 *
 * When the connection is lost it reconnects with capped exponential backoff. Notifications sent
 * while it was down are gone, so after a reconnect every subscriber is woken once to re-read.
 */
export interface ListenerOptions {
  /** Shown in pg_stat_activity, so operators (and tests) can tell this connection apart. */
  applicationName?: string;
  firstRetryMs?: number;
  maxRetryMs?: number;
}

type Wake = () => void;

export class ChannelListener {
  private client: pg.Client | null = null;
  private readonly subscribers = new Map<string, Set<Wake>>();
  private readonly anySubscribers = new Set<(key: string | null) => void>();
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private reconnects = 0;
  private pid: number | null = null;

  constructor(
    private readonly databaseUrl: string,
    readonly channel: string,
    private readonly options: ListenerOptions = {},
  ) {}

  /** Connects and listens; rejects when the first connection fails (the process should not start). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  /** Whether the LISTEN connection is up right now. */
  get listening(): boolean {
    return this.client !== null;
  }

  /** The server process of the LISTEN connection (pg_stat_activity.pid), while connected. */
  get backendPid(): number | null {
    return this.client ? this.pid : null;
  }

  /** How many times the connection was re-established after a loss. */
  get reconnectCount(): number {
    return this.reconnects;
  }

  /** Calls `wake` for every notification whose payload is `key`, and once after each reconnect. */
  subscribe(key: string, wake: Wake): () => void {
    let set = this.subscribers.get(key);
    if (!set) {
      set = new Set();
      this.subscribers.set(key, set);
    }
    set.add(wake);
    return () => {
      const current = this.subscribers.get(key);
      current?.delete(wake);
      if (current?.size === 0) this.subscribers.delete(key);
    };
  }

  /**
   * Calls `wake` with the payload of every notification, and with null once after each reconnect
   * (notifications sent meanwhile are gone). Returns the unsubscribe function.
   */
  subscribeAny(wake: (key: string | null) => void): () => void {
    this.anySubscribers.add(wake);
    return () => this.anySubscribers.delete(wake);
  }

  get subscriberCount(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: this.options.applicationName ?? "trapdoor-listener",
      keepAlive: true,
    });
    // Registered before connecting: an 'error' without a listener would crash the process.
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    client.on("notification", (message) => {
      if (message.channel === this.channel && message.payload) this.wake(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
      this.pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid ?? null;
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
  }

  private lost(client: pg.Client): void {
    if (client !== this.client || this.stopped) return;
    this.client = null;
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const first = this.options.firstRetryMs ?? 100;
    const delay = Math.min(this.options.maxRetryMs ?? 5000, first * 2 ** this.failures);
    this.retryTimer = setTimeout(() => {
      this.connect().then(
        () => {
          if (this.stopped) return;
          this.failures = 0;
          this.reconnects++;
          this.wakeAll();
        },
        () => {
          this.failures++;
          if (!this.stopped) this.scheduleReconnect();
        },
      );
    }, delay);
    this.retryTimer.unref();
  }

  private wake(key: string): void {
    for (const wake of this.subscribers.get(key) ?? []) wake();
    for (const wake of this.anySubscribers) wake(key);
  }

  private wakeAll(): void {
    for (const set of this.subscribers.values()) for (const wake of set) wake();
    for (const wake of this.anySubscribers) wake(null);
  }
}
