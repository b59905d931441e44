import type { ErrorKind } from "./sdk.ts";

/**
 * Exit codes of the client commands (`trapdoor login | datasets | jobs`), the one place they are
 * defined. Scripts branch on these; keep them stable.
 */
export const ExitCode = {
  /** Done. */
  OK: 0,
  /** Bad command line: unknown command or flag, missing argument, unreadable local file. */
  USAGE: 1,
  /** The API refused the request (BAD_USER_INPUT, NOT_FOUND, CONFLICT, FAILED_PRECONDITION, internal
   *  error), or an uploaded dataset failed validation. */
  API: 2,
  /** The job ended FAILED or CANCELLED. */
  JOB_FAILED: 3,
  /** Not logged in, or the API key is unknown or revoked (UNAUTHENTICATED, FORBIDDEN). */
  AUTH: 4,
  /** The API or the object store could not be reached, or a transfer failed after its retries. */
  NETWORK: 5,
  /** Downloaded bytes do not match the sha256 the API reported (the file is not kept). */
  INTEGRITY: 6,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code for each kind of error the client package throws. */
export const EXIT_CODE_OF: Readonly<Record<ErrorKind, ExitCode>> = {
  api: ExitCode.API,
  auth: ExitCode.AUTH,
  network: ExitCode.NETWORK,
  integrity: ExitCode.INTEGRITY,
  local: ExitCode.USAGE,
};

export const EXIT_CODES_HELP = `exit codes: 0 ok, 1 usage, 2 API or validation error, 3 job failed or cancelled,
  4 not logged in or key refused, 5 network, 6 download sha256 mismatch`;

/** An error a command reports to its user: a message, the exit code, and the API's error code if any. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly apiCode?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(ExitCode.USAGE, message);
