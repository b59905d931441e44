import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { LogFormat } from "./log.ts";
import { projectPath } from "./paths.ts";
/**
 * Training runs on `cpu`, `gpu` (one GPU) or `gpu-N` (N GPUs: one queue, and one worker pool, per
 * GPU count the deployment offers); dataset ingest and poisoning have queues of their own.
 */
export type GpuQueue = "gpu" | `gpu-${number}`;
export type TrainingQueue = "cpu" | GpuQueue;
export type QueueName = TrainingQueue | "ingest" | "poison";
export const QUEUE_NAMES: readonly QueueName[] = ["gpu", "cpu", "ingest", "poison"];

/** The queue of a job that asks for `gpus` GPUs (`gpu` for one). */
export const gpuQueue = (gpus: number): GpuQueue => (gpus === 1 ? "gpu" : `gpu-${gpus}`);
export const isGpuQueue = (queue: string): queue is GpuQueue =>
  queue === "gpu" || /^gpu-[1-9]\d*$/.test(queue);
/** Every queue a deployment offering these GPU counts has. */
export const queuesFor = (gpuCounts: readonly number[]): QueueName[] => [
  ...new Set<QueueName>([...QUEUE_NAMES, ...gpuCounts.map(gpuQueue)]),
];

/** Where objects live: a local directory (the embedded default) or an S3 bucket. */
export type StoreSettings =
  | { kind: "local"; root: string }
  | {
      kind: "s3";
      bucket: string;
      region: string;
      endpoint?: string;
      forcePathStyle?: boolean;
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    };

export interface Config {
  port: number;
  host: string;
  /** Where embedded Postgres, the local object store and scratch space live. */
  dataDir: string;
  /** Unset → embedded Postgres under dataDir. */
  databaseUrl?: string;
  /**
   * Apply pending migrations at start (TRAPDOOR_AUTO_MIGRATE, default true: the newcomer path).
   * Deployments set it to false and run `trapdoor migrate` once; a process then refuses to start
   * on a schema that is behind.
   */
  autoMigrate: boolean;
  /** TRAPDOOR_LOG_FORMAT: `text` (default) or `json` (one object per line, with requestId/jobId). */
  logFormat: LogFormat;
  /** Base URL clients use to reach this API (signed local-store URLs point here). */
  publicBaseUrl: string;
  /** TRAPDOOR_CONSOLE_DIR: the web console's built files, served at /console/ (default dist/console). */
  consoleDir: string;
  store: StoreSettings;
  signingSecret: string;
  worker: {
    queues: QueueName[];
    pollingIntervalSeconds: number;
    heartbeatSeconds: number;
    staleAfterSeconds: number;
    /**
     * `trapdoor worker --once`: run one training job, then exit; exit anyway after
     * `onceIdleSeconds` without claiming one (another worker took it). One pod per job (KEDA).
     */
    once: boolean;
    onceIdleSeconds: number;
    /** TRAPDOOR_METRICS_PORT: serve the worker's /metrics there (0: any free port; unset: none). */
    metricsPort?: number;
  };
  /** Interpreter for the trainer; unset → $TRAPDOOR_PYTHON, python3, /usr/bin/python3 (first with torch). */
  python?: string;
  limits: {
    maxUploadBytes: number;
    queryDepth: number;
    queryCost: number;
    /** Live jobs one tenant may have at once (TRAPDOOR_MAX_LIVE_JOBS): one tenant cannot start 40 GPU pods. */
    maxLiveJobsPerTenant: number;
    /** Jobs (methods x seeds) one comparison study may launch (TRAPDOOR_MAX_STUDY_JOBS). */
    maxStudyJobs: number;
    /** Per-tenant defaults (a tenant's own quota overrides them): bytes stored and datasets kept. */
    tenantMaxBytes: number;
    tenantMaxDatasets: number;
    /** Decoded size of one dataset (count × H × W × C), checked before any canonical byte is written. */
    maxDecodedBytes: number;
    /** Requests per tenant per window, shared by every API replica (0: no limit). */
    rateLimitRequests: number;
    rateLimitWindowSeconds: number;
    /**
     * Requests of one tenant in flight at once on one API process (0: no limit); 4 of the 10 pooled
     * database connections at most, so one tenant's burst leaves the others room.
     */
    maxConcurrentRequests: number;
    /** How long an API process answers a known key from memory (revocations are heard at once). */
    keyCacheSeconds: number;
  };
  /**
   * Queues an autoscaler serves (TRAPDOOR_AUTOSCALED_QUEUES, e.g. "gpu"): a launch there waits for a
   * worker to appear (up to queueTimeoutSeconds) where elsewhere it is refused at once.
   */
  autoscaledQueues: string[];
  queueTimeoutSeconds: number;
  /** Finished jobs' artifacts are deleted this many days after the job ended (0: kept forever). */
  artifactRetentionDays: number;
  /** How often the sweeper runs (temporaries, scratch, deleted datasets' objects, expired artifacts). */
  sweepIntervalSeconds: number;
  /** GPU counts a job may ask for (TRAPDOOR_GPU_COUNTS, e.g. "1,4"): the GPU worker pools offered. */
  gpuCounts: number[];
  webhooks: {
    /** CIDRs webhooks may reach although private or loopback (TRAPDOOR_WEBHOOK_ALLOWED_NETWORKS). */
    allowedNetworks: string[];
    /** Plain http:// endpoints (TRAPDOOR_WEBHOOK_ALLOW_HTTP; default https only). */
    allowHttp: boolean;
    /** Retries after a failed delivery, the first after retryDelaySeconds, doubling (TRAPDOOR_WEBHOOK_RETRY_*). */
    retryLimit: number;
    retryDelaySeconds: number;
  };
}

export class ConfigError extends Error {}

function intFrom(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new ConfigError(`${name} must be a non-negative integer, got ${value}`);
  return n;
}

/** The signing secret persists in the data directory so signed URLs survive restarts. */
function signingSecretFor(dataDir: string, env: NodeJS.ProcessEnv): string {
  if (env.TRAPDOOR_SIGNING_SECRET) return env.TRAPDOOR_SIGNING_SECRET;
  const path = join(dataDir, "signing-secret");
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString("hex");
  writeFileSync(path, secret, { mode: 0o600 });
  return secret;
}

function gpuCountsFrom(value: string | undefined): number[] {
  const counts = (value || "1").split(",").map((part) => Number(part.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 64))
    throw new ConfigError(
      `TRAPDOOR_GPU_COUNTS must list GPU counts from 1 to 64, got ${JSON.stringify(value)}`,
    );
  return [...new Set(counts)].sort((a, b) => a - b);
}

function logFormatFrom(value: string | undefined): LogFormat {
  if (!value || value === "text") return "text";
  if (value === "json") return "json";
  throw new ConfigError(`TRAPDOOR_LOG_FORMAT must be text or json, got ${JSON.stringify(value)}`);
}

function booleanFrom(value: string | undefined, fallback: boolean, name: string): boolean {
  if (value === undefined || value === "") return fallback;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(value)}`);
}

/** Environment (and CLI overrides) → a validated Config, once at start. */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: { port?: number; dataDir?: string } = {},
): Config {
  const port = overrides.port ?? intFrom(env.PORT, 4000, "PORT");
  const dataDir = resolve(overrides.dataDir ?? env.TRAPDOOR_DATA_DIR ?? ".trapdoor");
  const host = env.HOST ?? "127.0.0.1";
  const store: Config["store"] = env.S3_BUCKET
    ? {
        kind: "s3",
        bucket: env.S3_BUCKET,
        region: env.S3_REGION ?? "us-east-1",
        endpoint: env.S3_ENDPOINT || undefined,
        forcePathStyle: env.S3_FORCE_PATH_STYLE === "true" || Boolean(env.S3_ENDPOINT),
        credentials:
          env.S3_ACCESS_KEY_ID && env.S3_SECRET_ACCESS_KEY
            ? { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY }
            : undefined,
      }
    : { kind: "local", root: join(dataDir, "store") };
  const queues = (env.TRAPDOOR_WORKER_QUEUES ?? "")
    .split(",")
    .map((q) => q.trim())
    .filter(Boolean);
  for (const q of queues)
    if (!QUEUE_NAMES.includes(q as QueueName) && !isGpuQueue(q))
      throw new ConfigError(
        `TRAPDOOR_WORKER_QUEUES: unknown queue ${q}; known: ${QUEUE_NAMES.join(", ")}, gpu-N`,
      );
  return {
    port,
    host,
    dataDir,
    databaseUrl: env.DATABASE_URL || undefined,
    autoMigrate: booleanFrom(env.TRAPDOOR_AUTO_MIGRATE, true, "TRAPDOOR_AUTO_MIGRATE"),
    logFormat: logFormatFrom(env.TRAPDOOR_LOG_FORMAT),
    publicBaseUrl: env.TRAPDOOR_PUBLIC_URL ?? `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`,
    consoleDir: env.TRAPDOOR_CONSOLE_DIR || projectPath("dist", "console"),
    store,
    signingSecret: signingSecretFor(dataDir, env),
    worker: {
      queues: queues as QueueName[],
      pollingIntervalSeconds: intFrom(env.TRAPDOOR_POLL_SECONDS, 2, "TRAPDOOR_POLL_SECONDS"),
      heartbeatSeconds: intFrom(env.TRAPDOOR_HEARTBEAT_SECONDS, 10, "TRAPDOOR_HEARTBEAT_SECONDS"),
      staleAfterSeconds: intFrom(env.TRAPDOOR_STALE_AFTER_SECONDS, 60, "TRAPDOOR_STALE_AFTER_SECONDS"),
      once: false,
      onceIdleSeconds: intFrom(env.TRAPDOOR_ONCE_IDLE_SECONDS, 120, "TRAPDOOR_ONCE_IDLE_SECONDS"),
      metricsPort: env.TRAPDOOR_METRICS_PORT
        ? intFrom(env.TRAPDOOR_METRICS_PORT, 0, "TRAPDOOR_METRICS_PORT")
        : undefined,
    },
    python: env.TRAPDOOR_PYTHON || undefined,
    gpuCounts: gpuCountsFrom(env.TRAPDOOR_GPU_COUNTS),
    limits: {
      maxUploadBytes: intFrom(env.TRAPDOOR_MAX_UPLOAD_BYTES, 8 * 1024 ** 3, "TRAPDOOR_MAX_UPLOAD_BYTES"),
      queryDepth: 10,
      queryCost: 5000,
      maxLiveJobsPerTenant: intFrom(env.TRAPDOOR_MAX_LIVE_JOBS, 20, "TRAPDOOR_MAX_LIVE_JOBS"),
      maxStudyJobs: intFrom(env.TRAPDOOR_MAX_STUDY_JOBS, 24, "TRAPDOOR_MAX_STUDY_JOBS"),
      tenantMaxBytes: intFrom(env.TRAPDOOR_TENANT_MAX_BYTES, 200 * 1024 ** 3, "TRAPDOOR_TENANT_MAX_BYTES"),
      tenantMaxDatasets: intFrom(env.TRAPDOOR_TENANT_MAX_DATASETS, 1000, "TRAPDOOR_TENANT_MAX_DATASETS"),
      maxDecodedBytes: intFrom(env.TRAPDOOR_MAX_DECODED_BYTES, 8 * 1024 ** 3, "TRAPDOOR_MAX_DECODED_BYTES"),
      rateLimitRequests: intFrom(env.TRAPDOOR_RATE_LIMIT, 6000, "TRAPDOOR_RATE_LIMIT"),
      rateLimitWindowSeconds: Math.max(
        1,
        intFrom(env.TRAPDOOR_RATE_LIMIT_WINDOW_SECONDS, 60, "TRAPDOOR_RATE_LIMIT_WINDOW_SECONDS"),
      ),
      maxConcurrentRequests: intFrom(
        env.TRAPDOOR_MAX_CONCURRENT_REQUESTS,
        4,
        "TRAPDOOR_MAX_CONCURRENT_REQUESTS",
      ),
      keyCacheSeconds: intFrom(env.TRAPDOOR_KEY_CACHE_SECONDS, 30, "TRAPDOOR_KEY_CACHE_SECONDS"),
    },
    autoscaledQueues: (env.TRAPDOOR_AUTOSCALED_QUEUES ?? "")
      .split(",")
      .map((q) => q.trim())
      .filter(Boolean),
    queueTimeoutSeconds: intFrom(env.TRAPDOOR_QUEUE_TIMEOUT_SECONDS, 3600, "TRAPDOOR_QUEUE_TIMEOUT_SECONDS"),
    artifactRetentionDays: intFrom(
      env.TRAPDOOR_ARTIFACT_RETENTION_DAYS,
      30,
      "TRAPDOOR_ARTIFACT_RETENTION_DAYS",
    ),
    webhooks: {
      allowedNetworks: (env.TRAPDOOR_WEBHOOK_ALLOWED_NETWORKS ?? "")
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
      allowHttp: booleanFrom(env.TRAPDOOR_WEBHOOK_ALLOW_HTTP, false, "TRAPDOOR_WEBHOOK_ALLOW_HTTP"),
      retryLimit: intFrom(env.TRAPDOOR_WEBHOOK_RETRY_LIMIT, 8, "TRAPDOOR_WEBHOOK_RETRY_LIMIT"),
      retryDelaySeconds: Math.max(
        1,
        intFrom(env.TRAPDOOR_WEBHOOK_RETRY_DELAY_SECONDS, 10, "TRAPDOOR_WEBHOOK_RETRY_DELAY_SECONDS"),
      ),
    },
    sweepIntervalSeconds: Math.max(
      1,
      intFrom(env.TRAPDOOR_SWEEP_INTERVAL_SECONDS, 600, "TRAPDOOR_SWEEP_INTERVAL_SECONDS"),
    ),
  };
}
