/**
 * sanitizeDataset's request half: check the job, its health report and the policy, and create
 * the new TRAIN dataset (VALIDATING) that a worker then builds (sanitize-run.ts).
 */
import type { DataSource } from "typeorm";
import { type DatasetRow, type DerivedFrom, getDataset, insertDerivedDataset } from "../db/datasets.ts";
import { healthOf } from "../db/job-health.ts";
import { artifactsOf } from "../db/job-outputs.ts";
import { getJob } from "../db/jobs.ts";
import { transaction } from "../db/sql.ts";
import { badInput, notFound, precondition } from "../errors.ts";
import { checkOptionalString, decodedBytes, INPUT_LIMITS } from "../input-limits.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import type { QuotaService } from "../tenants/quota.ts";

export interface SanitizePolicy {
  dropTopFraction?: number | null;
  minScore?: number | null;
  indices?: number[] | null;
}

export interface SanitizeInput {
  fromJobId: string;
  policy: SanitizePolicy;
  name?: string | null;
}

/** The artifact every health report writes: each training sample's score. */
const SCORES_FILE = "health_scores.npy";

/** Exactly one rule, valid for a training set of `count` samples; the one as stored. */
export function checkPolicy(policy: SanitizePolicy, count: number): Record<string, unknown> {
  const given = Object.entries(policy ?? {}).filter(([, v]) => v != null);
  if (given.length !== 1)
    throw badInput("policy takes exactly one of dropTopFraction, minScore, indices", "policy");
  const [name, value] = given[0] as [keyof SanitizePolicy, unknown];
  if (name === "dropTopFraction" && !(typeof value === "number" && value > 0 && value < 1))
    throw badInput("dropTopFraction must be in (0, 1)", "policy.dropTopFraction");
  if (name === "minScore" && !(typeof value === "number" && Number.isFinite(value)))
    throw badInput("minScore must be a finite number", "policy.minScore");
  if (name === "indices") {
    const indices = value as number[];
    if (indices.length === 0) throw badInput("indices must name at least one sample", "policy.indices");
    if (indices.length >= count)
      throw badInput(`indices would remove every one of the ${count} samples`, "policy.indices");
    const seen = new Set<number>();
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= count)
        throw badInput(`every index must be in [0, ${count}); got ${i}`, "policy.indices");
      if (seen.has(i)) throw badInput(`index ${i} is listed twice`, "policy.indices");
      seen.add(i);
    }
  }
  return { [name]: value };
}

export async function requestSanitize(
  deps: { db: DataSource; queue: JobQueue; quotas: QuotaService },
  tenantId: string,
  input: SanitizeInput,
): Promise<DatasetRow> {
  checkOptionalString(input.name, "name", INPUT_LIMITS.datasetNameChars);
  const job = await getJob(deps.db, tenantId, input.fromJobId);
  if (!job) throw notFound("job", input.fromJobId);
  if (job.status !== "SUCCEEDED" || !(await healthOf(deps.db, job.id)))
    throw precondition(`job ${job.id} has no health report (only SUCCEEDED T&R and SCAN jobs have one)`);
  const scores = (await artifactsOf(deps.db, tenantId, job.id)).find((a) => a.file_name === SCORES_FILE);
  if (!scores) throw precondition(`the artifacts of job ${job.id} have expired; scan the dataset again`);
  const source = await getDataset(deps.db, tenantId, job.train_dataset_id);
  if (source?.status !== "READY") throw precondition(`the training set of job ${job.id} no longer exists`);
  const policy = checkPolicy(input.policy, source.count ?? 0);
  const derivedFrom: DerivedFrom = {
    datasetId: source.id,
    jobId: job.id,
    policy,
    removedCount: null,
    scoresKey: scores.storage_key,
  };
  const row = await transaction(deps.db, async (tx) => {
    // At most the size of its source once written.
    const bytes = decodedBytes({
      count: source.count ?? 0,
      height: source.height ?? 0,
      width: source.width ?? 0,
      channels: source.channels ?? 0,
    });
    await deps.quotas.reserve(tx, tenantId, { datasets: 1, bytes });
    return insertDerivedDataset(tx, {
      tenantId,
      name: input.name ?? `${source.name} (sanitized)`,
      role: "TRAIN",
      classNames: source.class_names,
      sourceId: source.id,
      derivedFrom,
    });
  });
  await deps.queue.enqueue("poison", { datasetId: row.id, attempt: 1 });
  return row;
}
