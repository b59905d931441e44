import { createServer, type Server } from "node:http";
import { ApolloServer } from "@apollo/server";
import { expressMiddleware } from "@as-integrations/express5";
import express from "express";
import type { Config } from "../config.ts";
import { LocalStore, localStoreRouter } from "../storage/local.ts";
import { buildContext, type Context, type Services } from "./context.ts";
import { publicError } from "./errors.ts";
import { depthAndCostLimit } from "./limits.ts";
import { resolvers } from "./resolvers/index.ts";
import { executableSchema, loadTypeDefs } from "./schema.ts";
import { attachSubscriptions, type Subscriptions, subscriptionsOverWebSocketOnly } from "./subscriptions.ts";

export { loadTypeDefs, SCHEMA_PATH } from "./schema.ts";

export const GRAPHQL_PATH = "/graphql";

export interface Api {
  app: express.Express;
  apollo: ApolloServer<Context>;
  listen(port: number, host: string): Promise<Server>;
  stop(): Promise<void>;
}

/**
 * The HTTP surface: POST /graphql, GraphQL over WebSocket on the same path (subscriptions),
 * signed local-store URLs under /objects, GET /healthz.
 */
export async function createApi(config: Config, services: Services): Promise<Api> {
  const schema = executableSchema(loadTypeDefs(), resolvers as never);
  const apollo = new ApolloServer<Context>({
    schema,
    validationRules: [
      depthAndCostLimit(config.limits.queryDepth, config.limits.queryCost),
      subscriptionsOverWebSocketOnly,
    ],
    csrfPrevention: true,
    formatError: publicError,
  });
  await apollo.start();
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", (_req, res) => {
    res.json({ ok: true });
  });
  if (services.store instanceof LocalStore) app.use("/objects", localStoreRouter(services.store));
  app.use(
    GRAPHQL_PATH,
    express.json({ limit: "1mb" }),
    expressMiddleware(apollo, {
      context: async ({ req }) => buildContext(services, req.headers.authorization),
    }),
  );
  let server: Server | undefined;
  let subscriptions: Subscriptions | undefined;
  return {
    app,
    apollo,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        const http = createServer(app);
        server = http;
        subscriptions = attachSubscriptions(http, GRAPHQL_PATH, schema, services, config.limits);
        http.once("error", reject);
        http.listen(port, host, () => resolve(http));
      }),
    async stop() {
      // Subscriptions first: their sockets would otherwise keep the HTTP server from closing.
      await subscriptions?.stop();
      await apollo.stop();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    },
  };
}
