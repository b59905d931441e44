import { GraphQLScalarType, Kind, type ValueNode } from "graphql";
import type { DatasetRole, DatasetRow } from "../../datasets/service.ts";
import { badInput } from "../../errors.ts";
import type {
  ArtifactRow,
  HealthRow,
  JobFilter,
  JobRow,
  JobStatus,
  SuspiciousRow,
} from "../../jobs/service.ts";
import type { StudyRow } from "../../jobs/studies.ts";
import type { ModelRow } from "../../models/service.ts";
import type { AuditRow } from "../../tenants/audit.ts";
import type { ApiKeyRow } from "../../tenants/service.ts";
import { eventBody } from "../../webhooks/dispatcher.ts";
import type { DeliveryRow, WebhookEvent, WebhookRow } from "../../webhooks/service.ts";
import { recordMutation } from "../audit.ts";
import { connection, decodeCursor, decodeRankCursor, encodeRankCursor, pageSize } from "../connection.ts";
import type { Context } from "../context.ts";
import { toGraphQLError } from "../errors.ts";

// `never` parameters: any resolver, whatever parent and argument types it declares, fits.
type Resolver = (parent: never, args: never, ctx: Context) => unknown;

/**
 * Resolvers only translate between GraphQL and services; errors become GraphQLErrors with codes.
 * With `audit`, each resolver that succeeds is recorded in the tenant's audit log (audit.ts).
 */
function guarded<T extends Record<string, Resolver>>(resolvers: T, audit = false): T {
  const out: Record<string, Resolver> = {};
  for (const [name, fn] of Object.entries(resolvers)) {
    out[name] = async (parent: never, args: never, ctx: Context) => {
      try {
        const result = await fn(parent, args, ctx);
        if (audit) await recordMutation(ctx, name, args as Record<string, unknown>, result);
        return result;
      } catch (error) {
        throw toGraphQLError(error);
      }
    };
  }
  return out as T;
}

function literalToJson(node: ValueNode): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.NULL:
      return null;
    case Kind.LIST:
      return node.values.map(literalToJson);
    case Kind.OBJECT:
      return Object.fromEntries(node.fields.map((f) => [f.name.value, literalToJson(f.value)]));
    default:
      throw badInput("variables are not allowed inside JSON literals");
  }
}

const JSONScalar = new GraphQLScalarType({
  name: "JSON",
  serialize: (v) => v,
  parseValue: (v) => v,
  parseLiteral: literalToJson,
});
const DateTimeScalar = new GraphQLScalarType({
  name: "DateTime",
  serialize: (v) => (v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString()),
  parseValue: (v) => {
    const date = new Date(String(v));
    if (Number.isNaN(date.getTime())) throw new TypeError("DateTime must be an ISO 8601 date-time");
    return date;
  },
});

const num = (v: unknown) => (v == null ? null : Number(v));

export const resolvers = {
  JSON: JSONScalar,
  DateTime: DateTimeScalar,
  Query: guarded({
    viewer: (_p, _a, ctx) => ctx.tenant,
    dataset: (_p, a: { id: string }, ctx) => ctx.loaders.dataset.load(a.id),
    datasets: async (_p, a: { first?: number; after?: string; role?: DatasetRole }, ctx) => {
      const first = pageSize(a.first);
      return connection(
        await ctx.datasets.list(ctx.tenant.id, { first, after: decodeCursor(a.after), role: a.role }),
        first,
      );
    },
    job: (_p, a: { id: string }, ctx) => ctx.loaders.job.load(a.id),
    jobs: async (
      _p,
      a: {
        first?: number;
        after?: string;
        status?: JobStatus;
        method?: string;
        filter?: JobFilter | null;
      },
      ctx,
    ) => {
      const first = pageSize(a.first);
      return connection(
        await ctx.jobs.list(ctx.tenant.id, {
          first,
          after: decodeCursor(a.after),
          status: a.status,
          method: a.method,
          filter: a.filter,
        }),
        first,
      );
    },
    study: (_p, a: { id: string }, ctx) => ctx.studies.get(ctx.tenant.id, a.id),
    studies: async (_p, a: { first?: number; after?: string }, ctx) => {
      const first = pageSize(a.first);
      return connection(
        await ctx.studies.list(ctx.tenant.id, { first, after: decodeCursor(a.after) }),
        first,
      );
    },
    model: (_p, a: { id: string }, ctx) => ctx.models.get(ctx.tenant.id, a.id),
    models: async (_p, a: { first?: number; after?: string }, ctx) => {
      const first = pageSize(a.first);
      return connection(await ctx.models.list(ctx.tenant.id, { first, after: decodeCursor(a.after) }), first);
    },
    operations: async (_p, _a, ctx) => ({
      queues: await ctx.jobs.operations(ctx.tenant.id),
      usage: await ctx.quotas.usage(ctx.tenant.id),
      quota: await ctx.quotas.quota(ctx.tenant.id),
    }),
    webhooks: (_p, _a, ctx) => ctx.webhooks.list(ctx.tenant.id),
    webhook: (_p, a: { id: string }, ctx) => ctx.webhooks.get(ctx.tenant.id, a.id),
    methods: (_p, _a, ctx) =>
      ctx.jobs.methods().map((m) => ({
        ...m,
        hyperparameters: Object.entries(m.hyperparameters).map(([name, p]) => ({
          name,
          ...p,
          nullable: Boolean(p.nullable),
        })),
      })),
    attacks: (_p, _a, ctx) => ctx.jobs.attacks(),
  }),
  Mutation: guarded(
    {
      createDatasetUpload: async (
        _p,
        a: { input: Parameters<Context["datasets"]["createUpload"]>[1] },
        ctx,
      ) => {
        const { dataset, uploads } = await ctx.datasets.createUpload(ctx.tenant.id, a.input);
        return { dataset, uploads, uploadUrl: uploads[0]?.url };
      },
      completeDatasetUpload: (_p, a: { id: string }, ctx) => ctx.datasets.complete(ctx.tenant.id, a.id),
      deleteDataset: (_p, a: { id: string }, ctx) => ctx.datasets.delete(ctx.tenant.id, a.id),
      poisonDataset: (_p, a: { input: Parameters<Context["datasets"]["poison"]>[1] }, ctx) =>
        ctx.datasets.poison(ctx.tenant.id, a.input),
      sanitizeDataset: (_p, a: { input: Parameters<Context["datasets"]["sanitize"]>[1] }, ctx) =>
        ctx.datasets.sanitize(ctx.tenant.id, a.input),
      launchTraining: (_p, a: { input: Parameters<Context["jobs"]["launch"]>[1] }, ctx) =>
        ctx.jobs.launch(ctx.tenant.id, a.input),
      scanDataset: (_p, a: { input: Parameters<Context["jobs"]["scan"]>[1] }, ctx) =>
        ctx.jobs.scan(ctx.tenant.id, a.input),
      launchStudy: (_p, a: { input: Parameters<Context["studies"]["launch"]>[1] }, ctx) =>
        ctx.studies.launch(ctx.tenant.id, a.input),
      cancelStudy: (_p, a: { id: string }, ctx) => ctx.studies.cancel(ctx.tenant.id, a.id),
      cancelJob: (_p, a: { id: string }, ctx) => ctx.jobs.cancel(ctx.tenant.id, a.id),
      retryJob: (_p, a: { id: string }, ctx) => ctx.jobs.retry(ctx.tenant.id, a.id),
      deleteJob: (_p, a: { id: string }, ctx) => ctx.jobs.delete(ctx.tenant.id, a.id),
      createModelUpload: (_p, a: { input: Parameters<Context["models"]["createUpload"]>[1] }, ctx) =>
        ctx.models.createUpload(ctx.tenant.id, a.input),
      completeModelUpload: (_p, a: { id: string }, ctx) => ctx.models.complete(ctx.tenant.id, a.id),
      deleteModel: (_p, a: { id: string }, ctx) => ctx.models.delete(ctx.tenant.id, a.id),
      evaluateModel: (_p, a: { input: Parameters<Context["jobs"]["evaluate"]>[1] }, ctx) =>
        ctx.jobs.evaluate(ctx.tenant.id, a.input),
      createWebhook: (_p, a: { input: { url: string; events: WebhookEvent[] } }, ctx) =>
        ctx.webhooks.create(ctx.tenant.id, a.input),
      rotateWebhookSecret: (_p, a: { id: string }, ctx) => ctx.webhooks.rotate(ctx.tenant.id, a.id),
      deleteWebhook: (_p, a: { id: string }, ctx) => ctx.webhooks.delete(ctx.tenant.id, a.id),
      createApiKey: (_p, a: { name: string; expiresAt?: Date | null }, ctx) =>
        ctx.tenants.createApiKey(ctx.tenant.id, a.name, a.expiresAt),
      revokeApiKey: (_p, a: { id: string }, ctx) => ctx.tenants.revokeApiKey(ctx.tenant.id, a.id),
    },
    true,
  ),
  Tenant: guarded({
    usage: (t: { id: string }, _a, ctx) => ctx.quotas.usage(t.id),
    quota: (t: { id: string }, _a, ctx) => ctx.quotas.quota(t.id),
    apiKeys: (t: { id: string }, _a, ctx) => ctx.tenants.apiKeys(t.id),
    auditLog: async (t: { id: string }, a: { first?: number; after?: string }, ctx) => {
      const first = pageSize(a.first);
      const rows = await ctx.audit.page(t.id, first, a.after);
      const page = rows.slice(0, first);
      return {
        edges: page.map((node) => ({ cursor: node.id, node })),
        pageInfo: { hasNextPage: rows.length > first, endCursor: page.at(-1)?.id ?? null },
      };
    },
  }),
  AuditEvent: {
    targetType: (e: AuditRow) => e.target_type,
    targetId: (e: AuditRow) => e.target_id,
  },
  ApiKey: {
    createdAt: (k: ApiKeyRow) => k.created_at,
    lastUsedAt: (k: ApiKeyRow) => k.last_used_at,
    expiresAt: (k: ApiKeyRow) => k.expires_at,
    revokedAt: (k: ApiKeyRow) => k.revoked_at,
  },
  Dataset: {
    role: (d: DatasetRow) => d.role,
    failureCode: (d: DatasetRow) => failureCode(d.failure_reason),
    failureReason: (d: DatasetRow) => d.failure_reason,
    sizeBytes: (d: DatasetRow) => Number(d.size_bytes),
    sha256: (d: DatasetRow) => (d.parts.length === 1 ? d.parts[0]?.sha256 : null),
    numClasses: (d: DatasetRow) => d.num_classes,
    classNames: (d: DatasetRow) => d.class_names,
    classHistogram: (d: DatasetRow) => d.class_histogram,
    createdAt: (d: DatasetRow) => d.created_at,
    derivedFrom: (d: DatasetRow) => {
      if (!d.derived_from) return null;
      const sanitized = (d.manifest?.sanitized ?? {}) as { removedCount?: number; removedPoisoned?: number };
      return {
        datasetId: d.derived_from.datasetId,
        jobId: d.derived_from.jobId,
        policy: d.derived_from.policy,
        removedCount: sanitized.removedCount ?? null,
        removedPoisonedCount: sanitized.removedPoisoned ?? null,
      };
    },
    ...guarded({
      downloadUrl: (
        d: DatasetRow,
        a: { format: "NPZ" | "NPY_PAIR"; part?: string | null; expiresInSeconds?: number },
        ctx,
      ) => ctx.datasets.downloadUrl(d, { ...a, expiresInSeconds: a.expiresInSeconds ?? 3600 }),
    }),
  },
  DatasetLineage: guarded({
    dataset: (l: { datasetId: string }, _a, ctx) => ctx.loaders.dataset.load(l.datasetId),
    job: (l: { jobId: string }, _a, ctx) => ctx.loaders.job.load(l.jobId),
  }),
  Subscription: {
    jobUpdated: {
      subscribe: async (_p: unknown, a: { id: string }, ctx: Context) => {
        try {
          return await ctx.jobs.watch(ctx.jobUpdates, ctx.tenant.id, a.id);
        } catch (error) {
          throw toGraphQLError(error);
        }
      },
      // Each event is the re-read job row; the TrainingJob resolvers below shape it.
      resolve: (job: JobRow) => job,
    },
    jobsUpdated: {
      subscribe: (_p: unknown, _a: unknown, ctx: Context) => ctx.jobs.watchAll(ctx.jobUpdates, ctx.tenant.id),
      resolve: (job: JobRow) => job,
    },
  },
  // Fields read from the row are plain functions: wrapping them (a promise each, 15 per job,
  // 50 jobs a page) cost jobs(first: 50) measurably. Only what reaches a service is guarded.
  TrainingJob: {
    progress: (j: JobRow) => j.progress,
    metrics: (j: JobRow) => {
      const m = j.metrics as Record<string, unknown> | null;
      return m
        ? {
            asr: num(m.asr),
            ca: num(m.ca),
            mse: num(m.mse),
            stage1Asr: num(m.stage1Asr),
            stage1Ca: num(m.stage1Ca),
            all: m,
          }
        : null;
    },
    hyperparameters: (j: JobRow) => j.hyperparameters,
    labels: (j: JobRow) => j.labels,
    externalId: (j: JobRow) => j.external_id,
    resources: (j: JobRow) => ({
      accelerator: j.queue === "cpu" ? "CPU" : "GPU",
      gpus: j.gpus,
      maxRuntimeSeconds: j.max_runtime_seconds,
    }),
    logTail: (j: JobRow) => j.log_tail,
    artifactsExpiredAt: (j: JobRow) => j.artifacts_expired_at,
    createdAt: (j: JobRow) => j.created_at,
    updatedAt: (j: JobRow) => j.updated_at,
    ...guarded({
      transitions: (j: JobRow, _a, ctx) => ctx.jobs.transitions(j),
      history: (j: JobRow, a: { name?: string; stage?: string }, ctx) => ctx.jobs.history(j, a),
      waitingReason: (j: JobRow, _a, ctx) => ctx.jobs.waitingReason(j),
      artifactsExpireAt: (j: JobRow, _a, ctx) => ctx.jobs.artifactsExpireAt(j),
      artifacts: (j: JobRow, _a, ctx) => ctx.jobs.artifacts(j),
      health: (j: JobRow, _a, ctx) => ctx.jobs.health(j),
    }),
  },
  Health: {
    verdict: (h: HealthRow) => h.verdict.toUpperCase(),
    likelyTarget: (h: HealthRow) => h.likely_target,
    sampleCount: (h: HealthRow) => h.sample_count,
    calibration: (h: HealthRow) => h.calibration,
    ...guarded({
      suspicious: async (h: HealthRow, a: { first?: number; after?: string }, ctx) => {
        const first = pageSize(a.first);
        const rows = await ctx.jobs.suspicious(h.job_id, first, decodeRankCursor(a.after));
        const page = rows.slice(0, first);
        return {
          edges: page.map((node) => ({ cursor: encodeRankCursor(node.rank), node })),
          pageInfo: {
            hasNextPage: rows.length > first,
            endCursor: page.length ? encodeRankCursor((page.at(-1) as SuspiciousRow).rank) : null,
          },
        };
      },
    }),
  },
  CalibrationGroup: {
    rates: (g: { name: string } & Record<string, unknown>) => g,
  },
  SuspiciousSample: {
    index: (s: SuspiciousRow) => s.sample_index,
    ...guarded({
      thumbnailUrl: (s: SuspiciousRow, a: { expiresInSeconds?: number }, ctx) =>
        s.thumbnail_key ? ctx.jobs.thumbnailUrl(s.thumbnail_key, a.expiresInSeconds) : null,
    }),
  },
  Study: {
    labels: (st: StudyRow) => st.labels,
    externalId: (st: StudyRow) => st.external_id,
    createdAt: (st: StudyRow) => st.created_at,
    ...guarded({
      status: (st: StudyRow, _a, ctx) => ctx.studies.status(st),
      jobs: (st: StudyRow, _a, ctx) => ctx.studies.children(st),
      table: (st: StudyRow, _a, ctx) => ctx.studies.table(st),
      report: async (st: StudyRow, _a, ctx) => {
        const report = await ctx.studies.report(st);
        return report
          ? {
              kind: "report",
              format: "tar",
              file_name: "report.tar",
              storage_key: report.key,
              size_bytes: String(report.sizeBytes),
              sha256: report.sha256,
            }
          : null;
      },
    }),
  },
  Model: {
    numClasses: (m: ModelRow) => m.num_classes,
    classNames: (m: ModelRow) => m.class_names,
    dtype: (m: ModelRow) => ({ F32: "FLOAT32", F16: "FLOAT16", BF16: "BFLOAT16" })[m.dtype],
    failureCode: (m: ModelRow) => failureCode(m.failure_reason),
    failureReason: (m: ModelRow) => m.failure_reason,
    sizeBytes: (m: ModelRow) => Number(m.size_bytes),
    parameters: (m: ModelRow) => (m.parameters === null ? null : Number(m.parameters)),
    createdAt: (m: ModelRow) => m.created_at,
  },
  Webhook: {
    createdAt: (w: WebhookRow) => w.created_at,
    secretRotatedAt: (w: WebhookRow) => w.secret_rotated_at,
    ...guarded({
      deliveries: async (w: WebhookRow, a: { first?: number; after?: string }, ctx) => {
        const first = pageSize(a.first);
        return connection(await ctx.webhooks.deliveries(w, first, decodeCursor(a.after)), first);
      },
    }),
  },
  WebhookDelivery: {
    payload: (d: DeliveryRow) => eventBody(d),
    lastError: (d: DeliveryRow) => d.last_error,
    lastStatusCode: (d: DeliveryRow) => d.last_status_code,
    createdAt: (d: DeliveryRow) => d.created_at,
    deliveredAt: (d: DeliveryRow) => d.delivered_at,
  },
  Artifact: guarded({
    sizeBytes: (a: ArtifactRow) => Number(a.size_bytes),
    downloadUrl: (a: ArtifactRow, args: { expiresInSeconds?: number }, ctx) =>
      ctx.jobs.artifactDownloadUrl(a, args.expiresInSeconds),
  }),
};

/** Ingest failures are stored as "CODE: message"; the code alone is what clients branch on. */
function failureCode(reason: string | null): string | null {
  return reason?.match(/^([A-Z][A-Z0-9_]*):/)?.[1] ?? null;
}
