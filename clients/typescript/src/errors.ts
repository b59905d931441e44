/**
 * The one error type the client throws. `kind` says what went wrong, so a caller can branch
 * (the CLI turns it into its exit code); `code` and `field` are the API's `extensions`, when the
 * API answered.
 */
export type ErrorKind =
  /** The API refused the request, or an uploaded dataset failed validation. */
  | "api"
  /** The API key is unknown, revoked or missing (UNAUTHENTICATED, FORBIDDEN). */
  | "auth"
  /** The API or the object store could not be reached, or a transfer failed after its retries. */
  | "network"
  /** Downloaded bytes do not match the sha256 the API reported (nothing is kept). */
  | "integrity"
  /** A local file could not be read or written. */
  | "local";

export class TrapdoorError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}
