/**
 * System invariants a healthy trapdoor holds once its work has settled:
 *
 *  (a) every dataset and every job is in a final state;
 *  (b) the object store holds exactly the objects the database references: nothing referenced is
 *      missing, nothing present is unreferenced (an orphan);
 *  (c) with a data directory, no scratch directory is left behind by a worker.
 *
 * Final states (src/db/datasets.ts DatasetStatus, src/db/job-lifecycle.ts JobStatus):
 *  - datasets: READY and FAILED. AWAITING_UPLOAD counts as final by default: nothing on the server
 *    moves such a dataset (only the client's PUTs and completeDatasetUpload do), so there is no
 *    in-flight work to wait for; an abandoned upload session rests there. Its parts may or may not
 *    have been PUT yet, so they are allowed in the store but not required. Pass
 *    `awaitingUploadIsFinal: false` to count them as unsettled. A soft-deleted dataset counts as
 *    gone whatever its status (no worker claims a deleted dataset).
 *  - jobs: SUCCEEDED, FAILED and CANCELLED (LIVE_STATES are the others).
 *
 * Object references (migrations/, src/db/*.ts, src/storage/keys.ts):
 *  - datasets.parts[].key (raw upload parts): required while VALIDATING or READY; allowed when
 *    AWAITING_UPLOAD or FAILED (completeDatasetUpload can fail a dataset on the first part's size
 *    before the second part was PUT).
 *  - canonical files of a READY dataset (keys.datasetCanonical): CANONICAL_FILES and every file
 *    its manifest's sha256 names are required; OPTIONAL_CANONICAL_FILES are allowed. A VALIDATING
 *    dataset may hold any canonical file (its worker is writing them).
 *  - training_jobs.checkpoint_key and artifacts.storage_key: required.
 *  - a soft-deleted dataset references nothing (deleteDataset removes its prefix).
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { DataSource } from "typeorm";
import { CANONICAL_FILES, keys, OPTIONAL_CANONICAL_FILES } from "../../src/storage/keys.ts";
import type { ObjectStore } from "../../src/storage/object-store.ts";

export const FINAL_DATASET_STATUSES = ["READY", "FAILED"] as const;
export const FINAL_JOB_STATUSES = ["SUCCEEDED", "FAILED", "CANCELLED"] as const;

export type ViolationKind =
  | "unsettled-dataset"
  | "unsettled-job"
  | "missing-object"
  | "orphan-object"
  | "scratch-leftover";

export interface Violation {
  kind: ViolationKind;
  /** The object key, scratch entry, dataset id or job id. */
  subject: string;
  detail: string;
}

export interface InvariantOptions {
  /** Poll up to this long for every dataset and job to reach a final state (0: check once). */
  settleTimeoutMs?: number;
  pollMs?: number;
  /** See the module comment (default true). */
  awaitingUploadIsFinal?: boolean;
  /** Where scratch lives is `<dataDir>/scratch`; without a data directory (c) is skipped. */
  dataDir?: string;
}

export interface InvariantReport {
  violations: Violation[];
  counts: { datasets: number; jobs: number; objects: number; referenced: number };
}

/** What the checker needs of an app: startTestApp's result, or a database and store. */
export interface InvariantTarget {
  db: DataSource;
  store: ObjectStore;
  config?: { dataDir: string };
}

interface DatasetRecord {
  id: string;
  tenant_id: string;
  status: string;
  parts: { key: string }[];
  manifest: { sha256?: Record<string, string> } | null;
  deleted: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function unsettled(db: DataSource, awaitingUploadIsFinal: boolean): Promise<Violation[]> {
  const finalDatasets: string[] = [...FINAL_DATASET_STATUSES];
  if (awaitingUploadIsFinal) finalDatasets.push("AWAITING_UPLOAD");
  const datasets: { id: string; status: string }[] = await db.query(
    "SELECT id, status FROM datasets WHERE deleted_at IS NULL AND NOT (status = ANY($1)) ORDER BY created_at",
    [finalDatasets],
  );
  const jobs: { id: string; status: string }[] = await db.query(
    "SELECT id, status FROM training_jobs WHERE NOT (status = ANY($1)) ORDER BY created_at",
    [[...FINAL_JOB_STATUSES]],
  );
  return [
    ...datasets.map((d) => ({ kind: "unsettled-dataset" as const, subject: d.id, detail: d.status })),
    ...jobs.map((j) => ({ kind: "unsettled-job" as const, subject: j.id, detail: j.status })),
  ];
}

/** Every dataset and job final, polling up to `timeoutMs`; returns what is still unsettled then. */
export async function waitForSettled(
  target: InvariantTarget,
  opts: { timeoutMs?: number; pollMs?: number; awaitingUploadIsFinal?: boolean } = {},
): Promise<Violation[]> {
  const deadline = Date.now() + (opts.timeoutMs ?? 0);
  for (;;) {
    const left = await unsettled(target.db, opts.awaitingUploadIsFinal ?? true);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await sleep(opts.pollMs ?? 500);
  }
}

/** Required and allowed object keys, from every table that names an object. */
async function referencedKeys(db: DataSource): Promise<{
  required: Map<string, string>;
  allowed: Set<string>;
  deletedPrefixes: string[];
  datasets: number;
  jobs: number;
}> {
  const required = new Map<string, string>();
  const allowed = new Set<string>();
  const deletedPrefixes: string[] = [];
  const datasets: DatasetRecord[] = await db.query(
    "SELECT id, tenant_id, status, parts, manifest, deleted_at IS NOT NULL AS deleted FROM datasets",
  );
  for (const d of datasets) {
    if (d.deleted) {
      deletedPrefixes.push(keys.datasetPrefix(d.tenant_id, d.id));
      continue;
    }
    const rawRequired = d.status === "VALIDATING" || d.status === "READY";
    for (const part of d.parts ?? []) {
      if (rawRequired) required.set(part.key, `dataset ${d.id} (${d.status}) raw part`);
      else allowed.add(part.key);
    }
    const canonical = (file: string) => keys.datasetCanonical(d.tenant_id, d.id, file);
    if (d.status === "READY") {
      const named = Object.keys(d.manifest?.sha256 ?? {});
      for (const file of new Set([...CANONICAL_FILES, ...named]))
        required.set(canonical(file), `dataset ${d.id} (READY) canonical ${file}`);
      for (const file of OPTIONAL_CANONICAL_FILES) allowed.add(canonical(file));
    } else if (d.status === "VALIDATING") {
      for (const file of [...CANONICAL_FILES, ...OPTIONAL_CANONICAL_FILES]) allowed.add(canonical(file));
    }
  }
  const jobs: { id: string; checkpoint_key: string | null }[] = await db.query(
    "SELECT id, checkpoint_key FROM training_jobs",
  );
  for (const j of jobs) if (j.checkpoint_key) required.set(j.checkpoint_key, `job ${j.id} checkpoint_key`);
  const artifacts: { job_id: string; file_name: string; storage_key: string }[] = await db.query(
    "SELECT job_id, file_name, storage_key FROM artifacts",
  );
  for (const a of artifacts) required.set(a.storage_key, `job ${a.job_id} artifact ${a.file_name}`);
  return { required, allowed, deletedPrefixes, datasets: datasets.length, jobs: jobs.length };
}

async function scratchEntries(dataDir: string): Promise<string[]> {
  try {
    return (await readdir(join(dataDir, "scratch"))).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** The checks, once settled (or after `settleTimeoutMs`). Never throws for a violation. */
export async function checkInvariants(
  target: InvariantTarget,
  opts: InvariantOptions = {},
): Promise<InvariantReport> {
  const violations: Violation[] = await waitForSettled(target, {
    timeoutMs: opts.settleTimeoutMs,
    pollMs: opts.pollMs,
    awaitingUploadIsFinal: opts.awaitingUploadIsFinal,
  });
  const refs = await referencedKeys(target.db);
  const present = await target.store.list("");
  const presentSet = new Set(present);
  for (const [key, why] of refs.required)
    if (!presentSet.has(key)) violations.push({ kind: "missing-object", subject: key, detail: why });
  for (const key of present) {
    if (refs.required.has(key) || refs.allowed.has(key)) continue;
    const deleted = refs.deletedPrefixes.some((prefix) => key.startsWith(prefix));
    violations.push({
      kind: "orphan-object",
      subject: key,
      detail: deleted ? "under a deleted dataset's prefix" : "referenced by no row",
    });
  }
  const dataDir = opts.dataDir ?? target.config?.dataDir;
  if (dataDir)
    for (const entry of await scratchEntries(dataDir))
      violations.push({ kind: "scratch-leftover", subject: entry, detail: join(dataDir, "scratch", entry) });
  return {
    violations,
    counts: {
      datasets: refs.datasets,
      jobs: refs.jobs,
      objects: present.length,
      referenced: refs.required.size,
    },
  };
}

export function formatViolations(violations: Violation[]): string {
  return violations.map((v) => `  ${v.kind}: ${v.subject} (${v.detail})`).join("\n");
}

/** Throws, listing every violation, unless the invariants hold. Returns the report. */
export async function assertInvariants(
  target: InvariantTarget,
  opts: InvariantOptions = {},
): Promise<InvariantReport> {
  const report = await checkInvariants(target, opts);
  if (report.violations.length > 0)
    throw new Error(
      `${report.violations.length} invariant violation(s):\n${formatViolations(report.violations)}`,
    );
  return report;
}
