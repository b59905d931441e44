import type { Server } from "node:http";
import {
  type ASTVisitor,
  type ExecutionArgs,
  GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
  parse,
  specifiedRules,
  type ValidationContext,
  validate,
} from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { buildContext, type Context, type Services } from "./context.ts";
import { publicError, toGraphQLError } from "./errors.ts";
import { depthAndCostLimit } from "./limits.ts";

export interface Subscriptions {
  /** Ends every subscription, closes every socket (1001 Going away) and the WebSocket server. */
  stop(): Promise<void>;
}

/** How long a client gets to answer the close handshake at shutdown before its socket is cut. */
const CLOSE_GRACE_MS = 1000;

/**
 * GraphQL over WebSocket (the graphql-transport-ws protocol) on the HTTP server's own port and
 * path. The API key travels in `connectionParams.authorization` (`Bearer td_…`), or in the upgrade
 * request's Authorization header. Every operation is authenticated and checked against the same
 * depth and cost limits as HTTP queries; refusals are GraphQL errors with `extensions.code`.
 */
export function attachSubscriptions(
  server: Server,
  path: string,
  schema: GraphQLSchema,
  services: Services,
  limits: { queryDepth: number; queryCost: number },
): Subscriptions {
  const wss = new WebSocketServer({ server, path });
  const rules = [...specifiedRules, depthAndCostLimit(limits.queryDepth, limits.queryCost)];
  const cleanup = useServer(
    {
      isProd: true,
      onSubscribe: async (ctx, _id, payload): Promise<ExecutionArgs | readonly GraphQLError[]> => {
        let document: ExecutionArgs["document"];
        try {
          document = parse(payload.query);
        } catch (error) {
          return [withCode(error as GraphQLError, "GRAPHQL_PARSE_FAILED")];
        }
        const invalid = validate(schema, document, rules);
        if (invalid.length > 0) return invalid.map((e) => withCode(e, "GRAPHQL_VALIDATION_FAILED"));
        let contextValue: Context;
        try {
          const authorization =
            ctx.connectionParams?.authorization ??
            ctx.connectionParams?.Authorization ??
            ctx.extra.request.headers.authorization;
          contextValue = await buildContext(services, authorization);
        } catch (error) {
          return [toGraphQLError(error)];
        }
        return {
          schema,
          document,
          variableValues: payload.variables,
          operationName: payload.operationName,
          contextValue,
        };
      },
      // A result's errors without a code: request errors (no path, e.g. a variable of the wrong
      // type) are the caller's, field errors are ours. Errors ending an operation carry a code
      // when they are the caller's (onSubscribe above); any other is ours and is masked.
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors
          ? {
              ...result,
              errors: result.errors.map((e) =>
                formatted(e, e.path ? "INTERNAL_SERVER_ERROR" : "BAD_USER_INPUT"),
              ),
            }
          : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => formatted(e, "INTERNAL_SERVER_ERROR")),
    },
    wss,
  );
  return {
    async stop() {
      const cut = setTimeout(() => {
        for (const socket of wss.clients) socket.terminate();
      }, CLOSE_GRACE_MS);
      try {
        await cleanup.dispose();
      } finally {
        clearTimeout(cut);
      }
    },
  };
}

/** A validation rule for the HTTP transport: subscriptions need the WebSocket on the same URL. */
export function subscriptionsOverWebSocketOnly(context: ValidationContext): ASTVisitor {
  return {
    OperationDefinition(node) {
      if (node.operation === "subscription")
        context.reportError(
          new GraphQLError(
            "subscriptions are served over WebSocket (graphql-transport-ws) at this same URL, not over HTTP",
            { nodes: [node], extensions: { code: "BAD_USER_INPUT" } },
          ),
        );
    },
  };
}

function withCode(error: GraphQLError, code: string): GraphQLError {
  if (error.extensions.code) return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    originalError: error.originalError,
    extensions: { ...error.extensions, code },
  });
}

/** The error as clients see it, with `fallbackCode` when it has none (`http` is HTTP-only). */
function formatted(error: GraphQLError, fallbackCode: string): GraphQLFormattedError {
  const { http: _, ...extensions } = error.toJSON().extensions ?? {};
  const code = extensions.code ?? fallbackCode;
  return publicError({ ...error.toJSON(), extensions: { ...extensions, code } }, error);
}
