import { GraphQLError } from "graphql";

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
