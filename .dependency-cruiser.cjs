/**
 * The control plane's layers (README, "Architecture"); `make lint` fails on any import that breaks
 * them, type-only imports included. Lowest first:
 *   core      config, errors, input-limits, log, paths    imports only core
 *   infra     db/, storage/, queue/, trainer/ (client)    core and its own folder only
 *   services  datasets/, jobs/, tenants/, maintenance/,  core, infra, other services
 *             models/, webhooks/
 *   api       api/                                        core, services
 *   worker    worker/                                     core, services, queue, trainer client
 *   client    client/                                     its own folder and clients/typescript (the API over HTTP)
 *   package   clients/typescript/                         nothing of the service (a package of its own)
 *   console   console/ (the web console, in the browser)  itself and the generated schema types only
 *   entry     cli/, main.ts                               anything: they compose the rest
 */
const CORE = "^src/(config|errors|input-limits|log|paths)[.]ts$";
const INFRA = "^src/(db|storage|queue|trainer)/";
const SERVICES = "^src/(datasets|jobs|maintenance|models|tenants|webhooks)/";
const ENTRY = "^src/(cli/|main[.]ts$)";

module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      comment: "No import cycle anywhere, type-only imports included.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "core-imports-nothing",
      comment: "config.ts and errors.ts are the bottom layer.",
      severity: "error",
      from: { path: CORE },
      to: { path: "^src/", pathNot: CORE },
    },
    {
      name: "infra-stays-in-its-folder",
      comment: "db, storage, queue and the trainer client use only core and their own folder.",
      severity: "error",
      from: { path: INFRA },
      to: { path: "^src/", pathNot: [CORE, "^src/$1/"] },
    },
    {
      name: "services-stay-below-api-and-worker",
      comment: "Services use core, infra and each other; never the API, the worker or the entry points.",
      severity: "error",
      from: { path: SERVICES },
      to: { path: "^src/", pathNot: [CORE, INFRA, SERVICES] },
    },
    {
      name: "api-uses-services-only",
      comment: "Resolvers translate between GraphQL and services; no database, store, queue or trainer.",
      severity: "error",
      from: { path: "^src/api/" },
      to: { path: "^src/", pathNot: [CORE, SERVICES, "^src/api/"] },
    },
    {
      name: "worker-uses-services-and-trainer-client",
      comment: "Workers sit beside the API: services, the queue they consume and the trainer client.",
      severity: "error",
      from: { path: "^src/worker/" },
      to: { path: "^src/", pathNot: [CORE, SERVICES, "^src/(queue|trainer|worker)/"] },
    },
    {
      name: "client-is-standalone",
      comment: "The CLI client talks to the API over HTTP only, through the TypeScript client package.",
      severity: "error",
      from: { path: "^src/client/" },
      to: { path: "^(src|clients)/", pathNot: ["^src/client/", "^clients/typescript/src/"] },
    },
    {
      name: "client-package-is-standalone",
      comment: "clients/typescript is a package of its own: it imports nothing of the service.",
      severity: "error",
      from: { path: "^clients/typescript/" },
      to: { path: "^(src|migrations)/" },
    },
    {
      name: "console-uses-the-public-api-only",
      comment: "The web console runs in the browser on the public GraphQL API: of this repository it imports only itself and the types generated from schema/.",
      severity: "error",
      from: { path: "^console/" },
      to: { path: "^(src|migrations|clients|console)/", pathNot: ["^console/", "^clients/typescript/src/generated/"] },
    },
    {
      name: "nothing-imports-entry-points",
      comment: "cli/ and main.ts compose the rest; nothing below imports them.",
      severity: "error",
      from: { pathNot: ENTRY },
      to: { path: ENTRY },
    },
  ],
  options: {
    includeOnly: "^(src|migrations|clients/typescript|console)/",
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".tsx", ".js"] },
  },
};
