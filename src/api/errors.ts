import { GraphQLError, type GraphQLFormattedError } from "graphql";

/** The error codes clients can branch on (`extensions.code`). */
export type ErrorCode =
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "CONFLICT"
  | "FAILED_PRECONDITION"
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
export const notFound = (what: string, id: string) =>
  new ServiceError("NOT_FOUND", `${what} ${id} does not exist`, { id });
export const conflict = (message: string) => new ServiceError("CONFLICT", message);
export const precondition = (message: string) => new ServiceError("FAILED_PRECONDITION", message);

/** Services throw ServiceError; resolvers surface it as a GraphQLError with the same code. */
export function toGraphQLError(error: unknown): GraphQLError {
  if (error instanceof GraphQLError) return error;
  if (error instanceof ServiceError) {
    return new GraphQLError(error.message, { extensions: { code: error.code, ...error.details } });
  }
  return new GraphQLError("internal error", { extensions: { code: "INTERNAL_SERVER_ERROR" } });
}

/**
 * What a client sees of an error, on every transport: internal errors never leak stack traces or
 * SQL, only "internal error" and the code.
 */
export function publicError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = formatted.extensions?.code;
  if (code === "INTERNAL_SERVER_ERROR" && !(error instanceof GraphQLError && error.extensions?.code)) {
    return { message: "internal error", extensions: { code } };
  }
  const { stacktrace: _, ...extensions } = formatted.extensions ?? {};
  return { ...formatted, extensions };
}
