import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { ApolloServer } from "@apollo/server";
import { expressMiddleware } from "@as-integrations/express5";
import express from "express";
import { GraphQLError } from "graphql";
import type { Config } from "../config.ts";
import { LocalStore, localStoreRouter } from "../storage/local.ts";
import { buildContext, type Context, type Services } from "./context.ts";
import { depthAndCostLimit } from "./limits.ts";
import { resolvers } from "./resolvers/index.ts";

export const SCHEMA_PATH = new URL("../../schema/schema.graphql", import.meta.url);

export function loadTypeDefs(): string {
  return readFileSync(SCHEMA_PATH, "utf8");
}

export interface Api {
  app: express.Express;
  apollo: ApolloServer<Context>;
  listen(port: number, host: string): Promise<Server>;
  stop(): Promise<void>;
}

/** The HTTP surface: POST /graphql, signed local-store URLs under /objects, GET /healthz. */
export async function createApi(config: Config, services: Services): Promise<Api> {
  const apollo = new ApolloServer<Context>({
    typeDefs: loadTypeDefs(),
    resolvers: resolvers as never,
    validationRules: [depthAndCostLimit(config.limits.queryDepth, config.limits.queryCost)],
    csrfPrevention: true,
    formatError: (formatted, error) => {
      // Internal errors never leak stack traces or SQL to clients.
      const code = formatted.extensions?.code;
      if (code === "INTERNAL_SERVER_ERROR" && !(error instanceof GraphQLError && error.extensions?.code)) {
        return { message: "internal error", extensions: { code } };
      }
      const { stacktrace: _, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    },
  });
  await apollo.start();
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", (_req, res) => {
    res.json({ ok: true });
  });
  if (services.store instanceof LocalStore) app.use("/objects", localStoreRouter(services.store));
  app.use(
    "/graphql",
    express.json({ limit: "1mb" }),
    expressMiddleware(apollo, {
      context: async ({ req }) => buildContext(services, req.headers.authorization),
    }),
  );
  let server: Server | undefined;
  return {
    app,
    apollo,
    listen: (port, host) =>
      new Promise((resolve) => {
        server = app.listen(port, host, () => resolve(server as Server));
      }),
    async stop() {
      await apollo.stop();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    },
  };
}
