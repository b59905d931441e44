import { type Client, createClient } from "graphql-ws";
import WebSocket from "ws";
import { TrapdoorError } from "./errors.ts";

/** Where the API is and the key to call it with. */
export interface Credentials {
  endpoint: string;
  key: string;
}

/** A GraphQL error as the API sends it. */
export interface ApiErrorJson {
  message: string;
  extensions?: { code?: string; field?: string };
}

const AUTH_CODES = new Set(["UNAUTHENTICATED", "FORBIDDEN"]);

/** The API's first error as a TrapdoorError (auth errors are their own kind). */
export function apiError(errors: readonly ApiErrorJson[]): TrapdoorError {
  const first = errors[0] ?? { message: "the API returned an error without a message" };
  const code = first.extensions?.code;
  const field = first.extensions?.field;
  const message = field && !first.message.includes(field) ? `${field}: ${first.message}` : first.message;
  return new TrapdoorError(code && AUTH_CODES.has(code) ? "auth" : "api", message, code, field);
}

export function networkError(what: string, error: unknown): TrapdoorError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const reason =
    (error as Error).name === "TimeoutError"
      ? "timed out"
      : (cause?.code ?? cause?.message ?? (error as Error).message ?? String(error));
  return new TrapdoorError("network", `${what}: ${reason}`);
}

export interface RequestOptions {
  /** Safe to send again (a read, or a mutation with an idempotency key): retried on network errors. */
  idempotent?: boolean;
  timeoutMs?: number;
}

export interface SubscriptionHandlers<T> {
  next(data: T): void;
  /** GraphQL errors, or a transport failure (kind "network") after the retries. */
  error(error: TrapdoorError): void;
  complete(): void;
}

const RETRY_DELAYS_MS = [300, 1000, 3000];

/** GraphQL over HTTP (Node's fetch) and over WebSocket (graphql-ws with `ws`) against one endpoint. */
export class ApiClient {
  constructor(
    readonly credentials: Credentials,
    private readonly defaultTimeoutMs = 30_000,
  ) {}

  get endpoint(): string {
    return this.credentials.endpoint;
  }

  async request<T>(
    query: string,
    variables: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once<T>(query, variables, options.timeoutMs ?? this.defaultTimeoutMs);
      } catch (error) {
        const delay = RETRY_DELAYS_MS[attempt];
        const retry = options.idempotent && error instanceof TrapdoorError && error.kind === "network";
        if (!retry || delay === undefined) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private async once<T>(query: string, variables: Record<string, unknown>, timeoutMs: number): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/graphql-response+json, application/json",
          authorization: `Bearer ${this.credentials.key}`,
        },
        body: JSON.stringify({ query, variables }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw networkError(`cannot reach ${this.endpoint}`, error);
    }
    let body: { data?: T | null; errors?: ApiErrorJson[] };
    try {
      body = (await response.json()) as typeof body;
    } catch {
      if (response.status === 401) throw new TrapdoorError("auth", "the API refused the key (HTTP 401)");
      throw new TrapdoorError(
        "network",
        `${this.endpoint} answered HTTP ${response.status} without GraphQL; is it a trapdoor API endpoint?`,
      );
    }
    if (body.errors?.length) throw apiError(body.errors);
    if (body.data == null)
      throw new TrapdoorError("api", `the API answered HTTP ${response.status} without data`);
    return body.data;
  }

  /** ws:// or wss:// on the same host and path as the HTTP endpoint. */
  get webSocketUrl(): string {
    const url = new URL(this.endpoint);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  /**
   * Subscribe over WebSocket. A dropped connection is retried a few times (the subscription then
   * starts again from the current state); after that `error` gets a "network" TrapdoorError. Returns
   * a function that unsubscribes and closes the socket.
   */
  subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    handlers: SubscriptionHandlers<T>,
  ): () => void {
    const client: Client = createClient({
      url: this.webSocketUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${this.credentials.key}` },
      retryAttempts: RETRY_DELAYS_MS.length,
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[retries] ?? 3000)),
      shouldRetry: () => true,
    });
    let done = false;
    const finish = () => {
      done = true;
      void client.dispose();
    };
    const unsubscribe = client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (done) return;
          if (result.errors?.length) {
            finish();
            handlers.error(apiError(result.errors as ApiErrorJson[]));
          } else if (result.data) handlers.next(result.data as T);
        },
        error: (error) => {
          if (done) return;
          finish();
          // graphql-ws hands over an array of GraphQL errors, or the socket's close event / an Error.
          if (Array.isArray(error)) handlers.error(apiError(error as ApiErrorJson[]));
          else handlers.error(socketError(this.webSocketUrl, error));
        },
        complete: () => {
          if (done) return;
          finish();
          handlers.complete();
        },
      },
    );
    return () => {
      if (done) return;
      unsubscribe();
      finish();
    };
  }
}

function socketError(url: string, error: unknown): TrapdoorError {
  const close = error as { code?: number; reason?: string };
  if (typeof close.code === "number") {
    const reason = close.reason ? `: ${close.reason}` : "";
    return new TrapdoorError("network", `the WebSocket to ${url} closed (${close.code}${reason})`);
  }
  return networkError(`cannot open a WebSocket to ${url}`, error);
}
