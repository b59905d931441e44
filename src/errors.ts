/**
 * Domain errors: what services throw when a request cannot be served. They carry a code clients can
 * branch on and optional details (e.g. the offending `field`); the API maps them to GraphQL errors
 * in one place (src/api/errors.ts), other transports (CLI, workers) read `code` directly.
 */

/** The error codes clients can branch on (`extensions.code`). */
export type ErrorCode =
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "CONFLICT"
  | "FAILED_PRECONDITION"
  | "QUOTA_EXCEEDED"
  | "INTERNAL_SERVER_ERROR";

export class ServiceError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const badInput = (message: string, field?: string) =>
  new ServiceError("BAD_USER_INPUT", message, field ? { field } : {});
/** NOT_FOUND; an id longer than any real one is cut short, so the error stays small. */
export const notFound = (what: string, id: string) => {
  const shown = id.length <= 64 ? id : `${id.slice(0, 61)}...`;
  return new ServiceError("NOT_FOUND", `${what} ${shown} does not exist`, { id: shown });
};
export const conflict = (message: string) => new ServiceError("CONFLICT", message);
export const precondition = (message: string) => new ServiceError("FAILED_PRECONDITION", message);
/** A tenant's limit is reached (`limit` says which, `max` its value); nothing was created. */
export const quotaExceeded = (message: string, limit: string, max: number) =>
  new ServiceError("QUOTA_EXCEEDED", message, { limit, max });
