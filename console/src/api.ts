/**
 * The console's only way to the service: the public GraphQL API at /graphql on the page's own
 * origin, over HTTP (queries, mutations) and WebSocket (subscriptions), with the user's key.
 */
import { type Client, createClient } from "graphql-ws";

export type ErrorKind = "auth" | "api" | "server" | "network";

/** What went wrong, in words a person can act on; `field` is the input path the API names. */
export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

interface ErrorJson {
  message: string;
  extensions?: { code?: string; field?: string };
}

const AUTH_CODES = new Set(["UNAUTHENTICATED", "FORBIDDEN"]);

function fromGraphQL(errors: readonly ErrorJson[]): ApiError {
  const first = errors[0] ?? { message: "the API returned an error without a message" };
  const code = first.extensions?.code;
  const kind = code && AUTH_CODES.has(code) ? "auth" : "api";
  return new ApiError(kind, first.message, code, first.extensions?.field);
}

/** A JSON error body of a non-GraphQL answer (rate limits, overload): `{error: {code, message}}`. */
async function fromHttp(res: Response): Promise<ApiError> {
  let detail = "";
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string }; errors?: ErrorJson[] };
    if (body.errors?.length) return fromGraphQL(body.errors);
    detail = body.error?.message ?? "";
    if (body.error?.code && (res.status === 401 || res.status === 403)) {
      return new ApiError("auth", detail || "the key was refused", body.error.code);
    }
  } catch {
    // Not JSON: a proxy's page. The status says enough.
  }
  const what = res.status >= 500 ? "The service failed" : "The service refused the request";
  return new ApiError(
    "server",
    `${what} (HTTP ${res.status})${detail ? `: ${detail}` : ""}.`,
    String(res.status),
  );
}

export class Api {
  private ws: Client | undefined;
  private readonly connectionListeners = new Set<(connected: boolean) => void>();
  private connected = false;

  constructor(
    readonly key: string,
    private readonly origin = window.location.origin,
  ) {}

  /** One GraphQL operation; its data, or an ApiError. */
  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.origin}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.key}` },
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new ApiError("network", "The API could not be reached. Check your connection and try again.");
    }
    if (!res.ok && !(res.headers.get("content-type") ?? "").includes("application/graphql-response+json")) {
      throw await fromHttp(res);
    }
    let body: { data?: T; errors?: ErrorJson[] };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      throw new ApiError("server", `The service sent an unreadable answer (HTTP ${res.status}).`);
    }
    if (body.errors?.length) throw fromGraphQL(body.errors);
    if (!res.ok || body.data === undefined) throw await fromHttp(res);
    return body.data;
  }

  /** A subscription; returns its unsubscribe. Errors reach `onError` (the socket retries first). */
  subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    onData: (data: T) => void,
    onError: (error: ApiError) => void,
  ): () => void {
    this.ws ??= createClient({
      url: `${this.origin.replace(/^http/, "ws")}/graphql`,
      connectionParams: { authorization: `Bearer ${this.key}` },
      lazy: true,
      retryAttempts: 5,
      on: {
        connected: () => this.announce(true),
        closed: () => this.announce(false),
      },
    });
    return this.ws.subscribe<T>(
      { query, variables },
      {
        next: (message) => {
          if (message.errors?.length) onError(fromGraphQL(message.errors as ErrorJson[]));
          else if (message.data) onData(message.data as T);
        },
        error: (error) =>
          onError(
            Array.isArray(error)
              ? fromGraphQL(error as ErrorJson[])
              : new ApiError("network", "Live updates stopped: the API could not be reached."),
          ),
        complete: () => {},
      },
    );
  }

  /** Follows whether the subscription socket is connected (live updates flow); returns the unfollow. */
  onConnection(listener: (connected: boolean) => void): () => void {
    this.connectionListeners.add(listener);
    listener(this.connected);
    return () => {
      this.connectionListeners.delete(listener);
    };
  }

  private announce(connected: boolean): void {
    this.connected = connected;
    for (const listener of this.connectionListeners) listener(connected);
  }

  close(): void {
    void this.ws?.dispose();
    this.ws = undefined;
  }
}
