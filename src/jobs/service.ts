import { createHash } from "node:crypto";
import type { DataSource } from "typeorm";
import { badInput, conflict, notFound, precondition } from "../errors.ts";
import { type DatasetRow, getDataset } from "../db/datasets.ts";
import { getJob, insertJob, type JobRow, transition } from "../db/jobs.ts";
import { trainerCatalog } from "../worker/python.ts";
import { isLive } from "./lifecycle.ts";
import type { JobQueue } from "./queue.ts";

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
  resources?: { gpu?: boolean | null } | null;
  idempotencyKey: string;
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
    private readonly python?: string,
  ) {}

  async launch(tenantId: string, input: LaunchInput): Promise<JobRow> {
    if (!input.idempotencyKey || input.idempotencyKey.length > 200)
      throw badInput("idempotencyKey must be 1 to 200 characters", "idempotencyKey");
    const { idempotencyKey, ...rest } = input;
    const inputHash = createHash("sha256").update(canonicalJson(rest)).digest("hex");
    const existing = await this.byKey(tenantId, idempotencyKey);
    if (existing) return this.sameOrConflict(existing, inputHash);

    const validated = await this.validate(tenantId, input);
    const [job, created] = await insertJob(this.db, { tenantId, idempotencyKey, inputHash, ...validated });
    if (!created) return this.sameOrConflict(job, inputHash);
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
  private async validate(tenantId: string, input: LaunchInput) {
    const catalog = await trainerCatalog(this.python);
    const method = catalog.methods.find((m) => m.name === input.method);
    if (!method)
      throw badInput(
        `unknown method ${input.method}; known: ${catalog.methods.map((m) => m.name).join(", ")}`,
        "method",
      );
    const architecture = input.architecture ?? "wrn16-1";
    if (!catalog.architectures.includes(architecture))
      throw badInput(
        `unknown architecture ${architecture}; known: ${catalog.architectures.join(", ")}`,
        "architecture",
      );
    const roles: [keyof LaunchInput, string, string | null | undefined][] = [
      ["trainDatasetId", "TRAIN", input.trainDatasetId],
      ["holdoutDatasetId", "HOLDOUT", input.holdoutDatasetId],
      ["testDatasetId", "TEST", input.testDatasetId],
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
    const target = input.target ?? input.attack?.target ?? null;
    if (input.asrTestDatasetId && target == null)
      throw badInput("target is required with an ASR test set", "target");
    if (target != null && (target < 0 || target >= (train.num_classes ?? 0)))
      throw badInput(`target must be in [0, ${train.num_classes})`, "target");
    if (input.attack) {
      const attack = catalog.attacks.find((a) => a.name === input.attack?.name);
      if (!attack) throw badInput(`unknown attack ${input.attack.name}`, "attack.name");
      for (const key of Object.keys(input.attack.params ?? {})) {
        if (!(key in attack.params))
          throw badInput(`attack ${attack.name} has no parameter ${key}`, `attack.params.${key}`);
      }
    }
    const hyperparameters = input.hyperparameters ?? {};
    if (typeof hyperparameters !== "object" || Array.isArray(hyperparameters))
      throw badInput("hyperparameters must be an object", "hyperparameters");
    for (const [name, value] of Object.entries(hyperparameters)) {
      const spec = method.hyperparameters[name];
      if (!spec)
        throw badInput(
          `${method.name} has no hyper-parameter ${name}; known: ${Object.keys(method.hyperparameters).join(", ")}`,
          `hyperparameters.${name}`,
        );
      const problem = checkValue(spec, value);
      if (problem) throw badInput(`hyperparameters.${name} ${problem}`, `hyperparameters.${name}`);
    }
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
      queue: (input.resources?.gpu ? "gpu" : "cpu") as "gpu" | "cpu",
    };
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

  async retry(tenantId: string, id: string): Promise<JobRow> {
    const job = await getJob(this.db, tenantId, id);
    if (!job) throw notFound("job", id);
    if (job.status !== "FAILED" && job.status !== "CANCELLED")
      throw precondition(`job is ${job.status}; only FAILED or CANCELLED jobs can be retried`);
    const queued = await transition(this.db, id, "QUEUED", "retried by user", { error: null }, [job.status]);
    if (!queued) throw conflict("the job changed state meanwhile; read it again");
    await this.queue.enqueue(job.queue, { jobId: id, attempt: job.attempt + 1 });
    return queued;
  }
}

function checkValue(
  spec: { type: string; minimum?: number; maximum?: number; choices?: unknown[]; nullable?: boolean },
  value: unknown,
): string | null {
  if (value === null) return spec.nullable ? null : "must not be null";
  if (spec.type === "bool" && typeof value !== "boolean") return "must be true or false";
  if ((spec.type === "int" || spec.type === "float") && typeof value !== "number") return "must be a number";
  if (spec.type === "int" && !Number.isInteger(value)) return "must be an integer";
  if (spec.type === "str" && typeof value !== "string") return "must be a string";
  if (spec.choices && !spec.choices.includes(value)) return `must be one of ${JSON.stringify(spec.choices)}`;
  if (typeof value === "number" && spec.minimum !== undefined && value < spec.minimum)
    return `must be >= ${spec.minimum}`;
  if (typeof value === "number" && spec.maximum !== undefined && value > spec.maximum)
    return `must be <= ${spec.maximum}`;
  return null;
}
