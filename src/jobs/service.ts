import { createHash } from "node:crypto";
import type { DataSource } from "typeorm";
import { type DatasetRow, getDataset } from "../db/datasets.ts";
import { type HealthRow, healthOf, type SuspiciousRow, suspiciousPage } from "../db/job-health.ts";
import { isLive, type JobStatus } from "../db/job-lifecycle.ts";
import { type ArtifactRow, artifactsOf, metricHistory } from "../db/job-outputs.ts";
import { jobCounts, queueDepths, tenantQueued } from "../db/job-stats.ts";
import {
  deleteFinishedJob,
  getJob,
  getJobs,
  insertJob,
  type JobRow,
  listJobs,
  RETRIED_BY_USER,
  transition,
  transitionsOf,
} from "../db/jobs.ts";
import { getModel } from "../db/models.ts";
import { transaction } from "../db/sql.ts";
import { badInput, conflict, notFound, precondition, ServiceError } from "../errors.ts";
import {
  checkExpiresIn,
  checkJsonSize,
  checkLabels,
  checkOptionalString,
  checkString,
  INPUT_LIMITS,
} from "../input-limits.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import type { QuotaService } from "../tenants/quota.ts";
import { type Catalog, trainerCatalog } from "../trainer/catalog.ts";
import { jobResources, type ResourcesInput } from "./resources.ts";
import { JobFeeds, type JobUpdateSource, watchJob, watchTenantJobs } from "./watch.ts";
import type { WorkerRegistry } from "./workers.ts";

export type { ArtifactRow, HealthRow, JobRow, JobStatus, JobUpdateSource, SuspiciousRow };

/** `scanDataset`'s input: a SCAN job over one TRAIN set, with its clean holdout as the reference. */
export interface ScanInput {
  datasetId: string;
  holdoutDatasetId: string;
  budget?: "FAST" | "THOROUGH" | null;
  architecture?: string | null;
  hyperparameters?: Record<string, unknown> | null;
  seed?: number | null;
  resources?: ResourcesInput | null;
  labels?: Record<string, unknown> | null;
  externalId?: string | null;
  idempotencyKey: string;
}

export const SCAN_METHOD = "SCAN";
export const EVALUATE_METHOD = "EVALUATE";

/** A launch's refusal, its field named as the calling mutation's input names it. */
function renameFields(names: Record<string, string>) {
  return (error: unknown): never => {
    if (!(error instanceof ServiceError)) throw error;
    const from = String(error.details.field);
    const field = names[from];
    throw field
      ? new ServiceError(error.code, error.message.replace(from, field), { ...error.details, field })
      : error;
  };
}

export interface LaunchInput {
  method: string;
  architecture?: string | null;
  trainDatasetId: string;
  holdoutDatasetId: string;
  testDatasetId: string;
  asrTestDatasetId?: string | null;
  attack?: { name: string; target: number; params?: Record<string, unknown> | null } | null;
  target?: number | null;
  hyperparameters?: Record<string, unknown> | null;
  seed?: number | null;
  resources?: ResourcesInput | null;
  /** the platform's own labels and id, found again with jobs(filter: ...) */
  labels?: Record<string, unknown> | null;
  externalId?: string | null;
  /** post-training defenses and evaluations: start from an uploaded model, or an earlier job's */
  modelId?: string | null;
  initJobId?: string | null;
  idempotencyKey: string;
}

/** `evaluateModel`'s input: an EVALUATE job of a model on a test set. */
export interface EvaluateInput {
  modelId?: string | null;
  initJobId?: string | null;
  testDatasetId: string;
  asrTestDatasetId?: string | null;
  target?: number | null;
  resources?: ResourcesInput | null;
  labels?: Record<string, unknown> | null;
  externalId?: string | null;
  idempotencyKey: string;
}

/** `jobs(filter: ...)` as the API passes it, checked by `list`. */
export interface JobFilter {
  labels?: Record<string, unknown> | null;
  externalId?: string | null;
}

/** What an idempotency key is bound to: the launch input's sha256, keys in a stable order. */
export function inputHashOf(input: unknown): string {
  return createHash("sha256").update(canonicalJson(input)).digest("hex");
}

/** Stable JSON (sorted keys) so the same input always hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

export class JobService {
  constructor(
    private readonly db: DataSource,
    private readonly queue: JobQueue,
    private readonly store: ObjectStore,
    private readonly quotas: QuotaService,
    private readonly workers: WorkerRegistry,
    private readonly gpuCounts: number[] = [1],
    private readonly artifactRetentionDays = 0,
    private readonly catalog: Catalog = trainerCatalog(),
  ) {
    this.feeds = new JobFeeds((tenantId, id) => getJob(db, tenantId, id));
  }

  /** The subscriptions' shared per-job feeds (one read per change per process). */
  private readonly feeds: JobFeeds;

  /** Jobs by status and queue, all tenants (operators' metrics, never a tenant's view). */
  countsByStatus() {
    return jobCounts(this.db);
  }

  /** Work waiting for a worker, per queue (operators' metrics). */
  queueDepths() {
    return queueDepths(this.db);
  }

  /**
   * Per queue: work waiting (every tenant's, no names), the caller's queued jobs, live workers, and
   * whether an autoscaler starts workers for it (the console's operations view).
   */
  async operations(tenantId: string) {
    const [waiting, mine, live] = await Promise.all([
      queueDepths(this.db),
      tenantQueued(this.db, tenantId),
      this.workers.liveByQueue(),
    ]);
    const names = [...new Set([...Object.keys(waiting), ...live.keys()])].sort();
    return names.map((name) => ({
      name,
      waiting: waiting[name] ?? 0,
      mine: mine[name] ?? 0,
      liveWorkers: live.get(name) ?? 0,
      autoscaled: this.workers.isAutoscaled(name),
    }));
  }

  /** Every defense method with its hyper-parameters (the trainer's catalog). */
  methods() {
    return this.catalog.data.methods;
  }

  /** Every built-in attack with its parameters (the trainer's catalog). */
  attacks() {
    return this.catalog.data.attacks;
  }

  get(tenantId: string, id: string): Promise<JobRow | null> {
    return getJob(this.db, tenantId, id);
  }

  /** Several jobs in one query, in the order asked (null where the tenant has none by that id). */
  async getMany(tenantId: string, ids: readonly string[]): Promise<(JobRow | null)[]> {
    const byId = new Map((await getJobs(this.db, tenantId, ids)).map((j) => [j.id, j]));
    return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
  }

  /** One page (newest first; `first` + 1 rows, so the caller can tell whether more follow). */
  list(
    tenantId: string,
    page: {
      first: number;
      after?: { createdAt: string; id: string };
      status?: JobStatus;
      method?: string;
      filter?: JobFilter | null;
    },
  ): Promise<JobRow[]> {
    const { filter, ...rest } = page;
    const externalId = checkOptionalString(
      filter?.externalId,
      "filter.externalId",
      INPUT_LIMITS.externalIdChars,
    );
    return listJobs(this.db, tenantId, {
      ...rest,
      labels: checkLabels(filter?.labels, "filter.labels"),
      externalId: externalId ?? undefined,
    });
  }

  /** A tenant's job as it changes (see watch.ts); NOT_FOUND for a job the tenant cannot see. */
  /** Every change of the tenant's jobs (see watch.ts), for as long as the subscriber stays. */
  watchAll(updates: JobUpdateSource, tenantId: string): AsyncIterableIterator<JobRow> {
    return watchTenantJobs(updates, tenantId, (tenant, id) => getJob(this.db, tenant, id));
  }

  watch(updates: JobUpdateSource, tenantId: string, id: string): Promise<AsyncIterableIterator<JobRow>> {
    return watchJob(this.feeds, updates, tenantId, id);
  }

  async transitions(job: JobRow) {
    return (await transitionsOf(this.db, job.id)).map((t) => ({
      from: t.from_status,
      to: t.to_status,
      reason: t.reason,
      at: t.at,
    }));
  }

  history(job: JobRow, filter: { name?: string; stage?: string }) {
    return metricHistory(this.db, job.id, filter);
  }

  artifacts(job: JobRow): Promise<ArtifactRow[]> {
    return artifactsOf(this.db, job.tenant_id, job.id);
  }

  /** A signed, expiring download URL for one artifact (1 s to 7 days). */
  artifactDownloadUrl(artifact: ArtifactRow, expiresInSeconds = 3600): Promise<string> {
    checkExpiresIn(expiresInSeconds);
    return this.store.downloadUrl(artifact.storage_key, { expiresInSeconds, fileName: artifact.file_name });
  }

  /** launchTraining: any method but SCAN, which has its own mutation. */
  launch(tenantId: string, input: LaunchInput): Promise<JobRow> {
    if (input.method === SCAN_METHOD)
      throw badInput("SCAN trains no model; launch it with scanDataset", "method");
    if (input.method === EVALUATE_METHOD)
      throw badInput("EVALUATE measures a model; launch it with evaluateModel", "method");
    return this.start(tenantId, input);
  }

  /**
   * scanDataset: a SCAN job. The scan reads only the training set and the holdout; the holdout
   * also stands in as the job's test set, the trainer's reporting reference.
   */
  scan(tenantId: string, input: ScanInput): Promise<JobRow> {
    checkJsonSize(input.hyperparameters, "hyperparameters");
    const hyperparameters = { ...(input.hyperparameters ?? {}) };
    if (input.budget != null && hyperparameters.budget != null && hyperparameters.budget !== input.budget)
      throw badInput(`budget (${input.budget}) disagrees with hyperparameters.budget`, "budget");
    hyperparameters.budget = input.budget ?? hyperparameters.budget ?? "FAST";
    const { datasetId, holdoutDatasetId, budget: _budget, ...rest } = input;
    const launch = { ...rest, method: SCAN_METHOD, trainDatasetId: datasetId, holdoutDatasetId };
    return this.start(tenantId, { ...launch, testDatasetId: holdoutDatasetId, hyperparameters }).catch(
      renameFields({ trainDatasetId: "datasetId", testDatasetId: "holdoutDatasetId" }),
    );
  }

  /** evaluateModel: an EVALUATE job (the test set stands in for the training and holdout sets, which it never reads). */
  evaluate(tenantId: string, input: EvaluateInput): Promise<JobRow> {
    const { testDatasetId, ...rest } = input;
    return this.start(tenantId, {
      ...rest,
      method: EVALUATE_METHOD,
      trainDatasetId: testDatasetId,
      holdoutDatasetId: testDatasetId,
      testDatasetId,
    }).catch(renameFields({ trainDatasetId: "testDatasetId", holdoutDatasetId: "testDatasetId" }));
  }

  /** A SUCCEEDED job's health report (null for other jobs and methods without one). */
  async health(job: JobRow): Promise<HealthRow | null> {
    return job.status === "SUCCEEDED" ? healthOf(this.db, job.id) : null;
  }

  /** One page of a report's ranking, after rank `afterRank`. */
  suspicious(jobId: string, first: number, afterRank: number): Promise<SuspiciousRow[]> {
    return suspiciousPage(this.db, jobId, afterRank, first);
  }

  /** A signed URL of one stored thumbnail (1 s to 7 days). */
  thumbnailUrl(key: string, expiresInSeconds = 3600): Promise<string> {
    checkExpiresIn(expiresInSeconds);
    return this.store.downloadUrl(key, { expiresInSeconds });
  }

  private async start(tenantId: string, input: LaunchInput): Promise<JobRow> {
    checkString(input.idempotencyKey, "idempotencyKey", INPUT_LIMITS.idempotencyKeyChars);
    const { idempotencyKey, ...rest } = input;
    const inputHash = inputHashOf(rest);
    const existing = await this.byKey(tenantId, idempotencyKey);
    if (existing) return this.sameOrConflict(existing, inputHash);

    const admitted = await this.admit(tenantId, input);
    const [job, created] = await transaction(this.db, async (tx) => {
      await this.quotas.reserve(tx, tenantId, { liveJobs: 1 });
      return insertJob(tx, { tenantId, idempotencyKey, inputHash, ...admitted });
    });
    if (!created) return this.sameOrConflict(job, inputHash);
    return this.queueNew(job);
  }

  /**
   * Everything a launch is checked for before anything is stored: sizes, datasets, method,
   * hyper-parameters, and a worker (or an autoscaler) for its queue. Returns the job's fields.
   */
  async admit(tenantId: string, input: Omit<LaunchInput, "idempotencyKey">) {
    checkString(input.method, "method", INPUT_LIMITS.identifierChars);
    checkOptionalString(input.architecture, "architecture", INPUT_LIMITS.identifierChars);
    if (input.attack) checkString(input.attack.name, "attack.name", INPUT_LIMITS.identifierChars);
    checkJsonSize(input.hyperparameters, "hyperparameters");
    checkJsonSize(input.attack?.params, "attack.params");
    const labels = checkLabels(input.labels, "labels");
    const externalId =
      checkOptionalString(input.externalId, "externalId", INPUT_LIMITS.externalIdChars) ?? null;
    const validated = await this.validate(tenantId, input);
    const availability = await this.workers.availability(validated.queue);
    if (!availability.served && !availability.autoscaled)
      throw precondition(
        `no live worker serves the ${validated.queue} queue on this deployment${validated.queue === "cpu" ? "" : " (it runs no GPU workers of that size)"}; launch on another accelerator or ask the operator to start one`,
      );
    return { ...validated, labels, externalId };
  }

  /** A job just inserted (VALIDATING): QUEUED and on its queue. */
  async queueNew(job: JobRow): Promise<JobRow> {
    const queued = await transition(this.db, job.id, "QUEUED", "inputs validated");
    await this.queue.enqueue(job.queue, { jobId: job.id, attempt: 1 });
    return queued ?? job;
  }

  private sameOrConflict(job: JobRow, inputHash: string): JobRow {
    if (job.input_hash !== inputHash)
      throw conflict("this idempotencyKey was already used for a different launch; use a new key");
    return job;
  }

  private async byKey(tenantId: string, key: string): Promise<JobRow | null> {
    const rows = await this.db.query(
      "SELECT * FROM training_jobs WHERE tenant_id = $1 AND idempotency_key = $2",
      [tenantId, key],
    );
    return rows[0] ?? null;
  }

  /** Everything that can be checked before queueing: roles, readiness, shapes, classes, method and hyper-parameters. */
  private async validate(tenantId: string, input: Omit<LaunchInput, "idempotencyKey">) {
    const catalog = this.catalog;
    const method = catalog.method(input.method);
    if (!method)
      throw badInput(
        `unknown method ${input.method}; known: ${catalog.data.methods.map((m) => m.name).join(", ")}`,
        "method",
      );
    const start = await this.startingModel(tenantId, input, method.kind);
    const architecture = input.architecture ?? start?.architecture ?? "wrn16-1";
    if (start && start.architecture !== architecture)
      throw badInput(`the model is a ${start.architecture}, not a ${architecture}`, "architecture");
    if (!catalog.data.architectures.includes(architecture))
      throw badInput(
        `unknown architecture ${architecture}; known: ${catalog.data.architectures.join(", ")}`,
        "architecture",
      );
    // A scan's holdout stands in as its test set (scan()); an evaluation has only a test set (evaluate()).
    const evaluation = method.kind === "evaluation";
    const roles: [keyof LaunchInput, string, string | null | undefined][] = [
      ["trainDatasetId", evaluation ? "TEST" : "TRAIN", input.trainDatasetId],
      ["holdoutDatasetId", evaluation ? "TEST" : "HOLDOUT", input.holdoutDatasetId],
      ["testDatasetId", method.kind === "scan" ? "HOLDOUT" : "TEST", input.testDatasetId],
      ["asrTestDatasetId", "ASR_TEST", input.asrTestDatasetId],
    ];
    const datasets: DatasetRow[] = [];
    for (const [field, role, id] of roles) {
      if (id == null) continue;
      const ds = await getDataset(this.db, tenantId, id);
      if (!ds) throw badInput(`dataset ${id} does not exist`, field);
      if (ds.role !== role)
        throw badInput(`dataset ${id} has role ${ds.role}; ${field} needs a ${role} dataset`, field);
      if (ds.status !== "READY") throw badInput(`dataset ${id} is ${ds.status}, not READY`, field);
      datasets.push(ds);
    }
    const [train] = datasets as [DatasetRow];
    if (start) {
      const shape = `${start.height}x${start.width}x${start.channels}, ${start.numClasses} classes`;
      if (
        start.height !== train.height ||
        start.width !== train.width ||
        start.channels !== train.channels ||
        start.numClasses !== train.num_classes
      )
        throw badInput(
          `the model takes ${shape}; the data is ${train.height}x${train.width}x${train.channels}, ${train.num_classes} classes`,
          start.field,
        );
    }
    for (const ds of datasets) {
      if (ds.height !== train.height || ds.width !== train.width || ds.channels !== train.channels) {
        throw badInput(
          `dataset ${ds.id} is ${ds.height}x${ds.width}x${ds.channels}, the training set ${train.height}x${train.width}x${train.channels}`,
          "datasets",
        );
      }
      if (ds.num_classes !== train.num_classes)
        throw badInput(
          `dataset ${ds.id} has ${ds.num_classes} classes, the training set ${train.num_classes}`,
          "datasets",
        );
    }
    if (input.target != null && input.attack && input.attack.target !== input.target)
      throw badInput(
        `target (${input.target}) disagrees with attack.target (${input.attack.target}); give one, or the same`,
        "target",
      );
    const target = input.target ?? input.attack?.target ?? null;
    if (input.asrTestDatasetId && target == null)
      throw badInput("target is required with an ASR test set", "target");
    if (target != null && (target < 0 || target >= (train.num_classes ?? 0)))
      throw badInput(`target must be in [0, ${train.num_classes})`, "target");
    if (input.attack) {
      const attack = catalog.attack(input.attack.name);
      if (!attack) throw badInput(`unknown attack ${input.attack.name}`, "attack.name");
      const problem = catalog.checkAttackParams(attack, input.attack.params ?? {});
      if (problem) throw badInput(`${problem.field} ${problem.message}`, problem.field);
    }
    const hyperparameters = input.hyperparameters ?? {};
    const problem = catalog.checkHyperparameters(method, hyperparameters);
    if (problem) throw badInput(`${problem.field} ${problem.message}`, problem.field);
    const seed = input.seed ?? 0;
    if (!Number.isInteger(seed) || seed < 0) throw badInput("seed must be a non-negative integer", "seed");
    return {
      method: method.name,
      architecture,
      trainId: input.trainDatasetId,
      holdoutId: input.holdoutDatasetId,
      testId: input.testDatasetId,
      asrTestId: input.asrTestDatasetId ?? null,
      attack: input.attack
        ? { name: input.attack.name, target: input.attack.target, params: input.attack.params ?? {} }
        : null,
      target,
      seed,
      hyperparameters,
      modelId: input.modelId ?? null,
      initJobId: input.initJobId ?? null,
      ...jobResources(input.resources, this.gpuCounts),
    };
  }

  /**
   * The model a post-training defense or an evaluation starts from: an uploaded one (modelId) or
   * an earlier job's (initJobId), with the shape it takes; null when none is given.
   */
  private async startingModel(tenantId: string, input: Omit<LaunchInput, "idempotencyKey">, kind: string) {
    const given = [input.modelId ? "modelId" : null, input.initJobId ? "initJobId" : null].filter(Boolean);
    if (given.length > 1) throw badInput("give modelId or initJobId, not both", "modelId");
    if (given.length === 0) {
      if (kind === "evaluation")
        throw badInput("an evaluation needs a model: modelId or initJobId", "modelId");
      return null;
    }
    const field = given[0] as "modelId" | "initJobId";
    if (kind !== "post-training" && kind !== "evaluation")
      throw badInput(
        `${input.method} trains its model from scratch; only post-training defenses start from one`,
        field,
      );
    if (input.modelId) {
      const model = await getModel(this.db, tenantId, input.modelId);
      if (!model) throw badInput(`model ${input.modelId} does not exist`, field);
      if (model.status !== "READY") throw badInput(`model ${model.id} is ${model.status}, not READY`, field);
      return {
        field,
        architecture: model.architecture,
        height: model.height,
        width: model.width,
        channels: model.channels,
        numClasses: model.num_classes,
      };
    }
    const job = await getJob(this.db, tenantId, input.initJobId as string);
    if (!job) throw badInput(`job ${input.initJobId} does not exist`, field);
    const files = new Set((await artifactsOf(this.db, tenantId, job.id)).map((a) => a.file_name));
    if (job.status !== "SUCCEEDED" || !files.has("model.safetensors") || !files.has("config.json"))
      throw badInput(
        `job ${job.id} has no model to start from (it is ${job.status}, or its artifacts expired)`,
        field,
      );
    const train = await getDataset(this.db, tenantId, job.train_dataset_id);
    return {
      field,
      architecture: job.architecture,
      height: train?.height ?? null,
      width: train?.width ?? null,
      channels: train?.channels ?? null,
      numClasses: train?.num_classes ?? null,
    };
  }

  /** When retention deletes a finished job's artifacts (null: live, already expired, or kept forever). */
  artifactsExpireAt(job: JobRow): Date | null {
    if (!job.finished_at || job.artifacts_expired_at || this.artifactRetentionDays <= 0) return null;
    return new Date(new Date(job.finished_at).getTime() + this.artifactRetentionDays * 86_400_000);
  }

  /** Why a QUEUED job waits (null in other states). */
  async waitingReason(job: JobRow): Promise<string | null> {
    if (job.status !== "QUEUED") return null;
    const availability = await this.workers.availability(job.queue);
    if (availability.served) return `waiting for a free worker on the ${job.queue} queue`;
    const timeout = `it fails with QUEUE_TIMEOUT if none starts within ${this.workers.queueTimeoutSeconds} s of queueing`;
    return availability.autoscaled
      ? `no worker serves the ${job.queue} queue yet; the autoscaler starts one for queued work (${timeout})`
      : `no live worker serves the ${job.queue} queue; ${timeout}`;
  }

  async cancel(tenantId: string, id: string): Promise<JobRow> {
    const job = await getJob(this.db, tenantId, id);
    if (!job) throw notFound("job", id);
    if (!isLive(job.status)) throw precondition(`job is ${job.status}; only live jobs can be cancelled`);
    if (job.status === "CANCELLING") return job;
    // Nobody runs a queued job yet: it goes straight through CANCELLING to CANCELLED. A running one
    // waits for its worker to stop the trainer and store the checkpoint.
    const cancelling = await transition(this.db, id, "CANCELLING", "cancelled by user");
    if (!cancelling) return (await getJob(this.db, tenantId, id)) as JobRow;
    if (job.status === "QUEUED" || job.status === "VALIDATING") {
      return (
        (await transition(this.db, id, "CANCELLED", "cancelled before a worker started it")) ?? cancelling
      );
    }
    return cancelling;
  }

  /**
   * Deletes a finished job with its artifacts and checkpoint (objects first: a crash in between
   * leaves a row whose downloads fail, never objects nobody references). Live jobs: cancel first.
   */
  async delete(tenantId: string, id: string): Promise<boolean> {
    const job = await getJob(this.db, tenantId, id);
    if (!job) throw notFound("job", id);
    if (isLive(job.status)) throw conflict(`job is ${job.status}; cancel it and wait until it is CANCELLED`);
    await this.store.deletePrefix(keys.jobPrefix(tenantId, job.id));
    return deleteFinishedJob(this.db, tenantId, job.id);
  }

  async retry(tenantId: string, id: string): Promise<JobRow> {
    const job = await getJob(this.db, tenantId, id);
    if (!job) throw notFound("job", id);
    if (job.status !== "FAILED" && job.status !== "CANCELLED")
      throw precondition(`job is ${job.status}; only FAILED or CANCELLED jobs can be retried`);
    const queued = await transition(this.db, id, "QUEUED", RETRIED_BY_USER, { error: null }, [job.status]);
    if (!queued) throw conflict("the job changed state meanwhile; read it again");
    await this.queue.enqueue(job.queue, { jobId: id, attempt: job.attempt + 1 });
    return queued;
  }
}
