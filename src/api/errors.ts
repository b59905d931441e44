/** The one place where domain errors (src/errors.ts) become GraphQL errors with `extensions.code`. */
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { ServiceError } from "../errors.ts";

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
