import { createServer, type Server } from "node:http";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginCacheControlDisabled } from "@apollo/server/plugin/disabled";
import { expressMiddleware } from "@as-integrations/express5";
import express, { type RequestHandler } from "express";
import type { Config } from "../config.ts";
import { createLogger, type Logger } from "../log.ts";
import type { Tenant } from "../tenants/service.ts";
import { admission } from "./admission.ts";
import { type Context, contextFor, type Services } from "./context.ts";
import { publicError } from "./errors.ts";
import { jsonErrors, notFoundJson } from "./http-errors.ts";
import { depthAndCostLimit } from "./limits.ts";
import { apiMetrics } from "./metrics.ts";
import { requestIds } from "./request-log.ts";
import { resolvers } from "./resolvers/index.ts";
import { executableSchema, loadTypeDefs } from "./schema.ts";
import { attachSubscriptions, type Subscriptions, subscriptionsOverWebSocketOnly } from "./subscriptions.ts";

export { loadTypeDefs, SCHEMA_PATH } from "./schema.ts";

export const GRAPHQL_PATH = "/graphql";

/**
 * Every response is data, never a page to render: nothing may load, run or frame it, and its
 * type is not to be guessed. (A console served here would get its own, looser policy.)
 */
const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  next();
};

export interface Api {
  app: express.Express;
  apollo: ApolloServer<Context>;
  listen(port: number, host: string): Promise<Server>;
  stop(): Promise<void>;
}

/**
 * The HTTP surface: POST /graphql, GraphQL over WebSocket on the same path (subscriptions),
 * GET /healthz, and the routes the composition root adds (the local store's signed URLs under
 * /objects): the API itself knows nothing of where objects live.
 */
export async function createApi(
  config: Config,
  services: Services,
  routes: Record<string, RequestHandler> = {},
  log: Logger = createLogger(config.logFormat),
): Promise<Api> {
  const schema = executableSchema(loadTypeDefs(), resolvers as never);
  const apollo = new ApolloServer<Context>({
    schema,
    validationRules: [
      depthAndCostLimit(config.limits.queryDepth, config.limits.queryCost),
      subscriptionsOverWebSocketOnly,
    ],
    csrfPrevention: true,
    // Cache hints are computed for every field of every response unless disabled; nothing here
    // serves HTTP caching (responses are per tenant and private), and jobs(first: 50) pays for it.
    plugins: [ApolloServerPluginCacheControlDisabled()],
    // The process owns its signals: SIGTERM stops the whole app (api.stop() stops Apollo) and exits 0.
    // Apollo's own handler would re-raise the signal and kill the process before that.
    stopOnTerminationSignals: false,
    formatError: publicError,
  });
  await apollo.start();
  const app = express();
  app.disable("x-powered-by");
  app.use(securityHeaders);
  const metrics = apiMetrics(services);
  app.use(requestIds(log));
  app.use(metrics.timing);
  app.get("/metrics", metrics.endpoint);
  // Liveness: the process answers. Readiness: it can serve (database and object store reachable).
  app.get("/healthz", (_req, res) => {
    res.json({ ok: true });
  });
  app.get("/readyz", async (_req, res) => {
    const checks = await services.ready();
    const ok = Object.values(checks).every((v) => v === "ok");
    res.status(ok ? 200 : 503).json({ ok, checks });
  });
  for (const [path, handler] of Object.entries(routes)) app.use(path, handler);
  app.use(
    GRAPHQL_PATH,
    admission(services),
    express.json({ limit: "1mb" }),
    expressMiddleware(apollo, {
      context: async ({ res }) => contextFor(services, res.locals.tenant as Tenant),
    }),
  );
  app.use(notFoundJson);
  app.use(jsonErrors(log));
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
