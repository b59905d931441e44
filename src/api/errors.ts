/** The one place where domain errors (src/errors.ts) become GraphQL errors with `extensions.code`. */
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { ServiceError } from "../errors.ts";

/**
 * Postgres refuses some text whatever the column: a NUL character in text (22021) or a \u0000
 * escape in jsonb (22P05). Only user input carries such text, so it is the caller's to fix.
 */
const UNSTORABLE_TEXT = new Set(["22021", "22P05"]);

function isUnstorableText(error: unknown): boolean {
  const e = error as { code?: unknown; driverError?: { code?: unknown } } | null;
  const code = e?.driverError?.code ?? e?.code;
  return typeof code === "string" && UNSTORABLE_TEXT.has(code);
}

/** Services throw ServiceError; resolvers surface it as a GraphQLError with the same code. */
export function toGraphQLError(error: unknown): GraphQLError {
  if (error instanceof GraphQLError) return error;
  if (error instanceof ServiceError) {
    return new GraphQLError(error.message, { extensions: { code: error.code, ...error.details } });
  }
  if (isUnstorableText(error)) {
    return new GraphQLError("text must not contain NUL (\\u0000) characters", {
      extensions: { code: "BAD_USER_INPUT" },
    });
  }
  return new GraphQLError("internal error", { extensions: { code: "INTERNAL_SERVER_ERROR" } });
}

/**
 * graphql-js stops coercing variables after 50 errors and adds one more, without a code, saying
 * so: the request's fault, like the 50 before it.
 */
function isVariableErrorLimit(error: unknown): boolean {
  return error instanceof GraphQLError && error.message.startsWith("Too many errors processing variables");
}

/**
 * What a client sees of an error, on every transport: internal errors never leak stack traces or
 * SQL, only "internal error" and the code.
 */
export function publicError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = formatted.extensions?.code;
  if (code === "INTERNAL_SERVER_ERROR" && isVariableErrorLimit(error)) {
    return { message: formatted.message, extensions: { code: "BAD_USER_INPUT" } };
  }
  if (code === "INTERNAL_SERVER_ERROR" && !(error instanceof GraphQLError && error.extensions?.code)) {
    return { message: "internal error", extensions: { code } };
  }
  const { stacktrace: _, ...extensions } = formatted.extensions ?? {};
  return { ...formatted, extensions };
}
