/**
 * Comparison studies: methods x seeds launched as ordinary jobs on the same data in one call.
 * Every child goes through the same checks as launchTraining and counts toward the tenant's
 * live-job cap; all of them are admitted or none. A study's status is derived from its children's
 * each time it is read; its report bundle is built once, when the last child has ended.
 */
import type { DataSource } from "typeorm";
import { isLive, type StudyStatus, studyStatus } from "../db/job-lifecycle.ts";
import { insertJob, type JobRow } from "../db/jobs.ts";
import { transaction } from "../db/sql.ts";
import {
  getStudy,
  insertStudy,
  listStudies,
  markStudyCancelled,
  type StoredReport,
  type StudyRow,
  type StudySpec,
  setStudyReport,
  studyByKey,
  studyJobs,
} from "../db/studies.ts";
import { badInput, conflict, notFound, precondition, ServiceError } from "../errors.ts";
import { checkLabels, checkOptionalString, checkString, INPUT_LIMITS } from "../input-limits.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import type { QuotaService } from "../tenants/quota.ts";
import type { ResourcesInput } from "./resources.ts";
import { inputHashOf, type JobService, SCAN_METHOD } from "./service.ts";
import { buildStudyReport, type StudyTableRow, studyTable } from "./study-report.ts";

export type { StudyRow, StudyStatus };

export interface StudyInput {
  methods: { method: string; hyperparameters?: Record<string, unknown> | null }[];
  seeds: number[];
  trainDatasetId: string;
  holdoutDatasetId: string;
  testDatasetId: string;
  asrTestDatasetId?: string | null;
  target?: number | null;
  architecture?: string | null;
  resources?: ResourcesInput | null;
  labels?: Record<string, unknown> | null;
  externalId?: string | null;
  idempotencyKey: string;
}

export class StudyService {
  constructor(
    private readonly db: DataSource,
    private readonly jobs: JobService,
    private readonly store: ObjectStore,
    private readonly quotas: QuotaService,
    /** Children (methods x seeds) one study may launch (TRAPDOOR_MAX_STUDY_JOBS). */
    private readonly maxJobs: number,
  ) {}

  get(tenantId: string, id: string): Promise<StudyRow | null> {
    return getStudy(this.db, tenantId, id);
  }

  list(tenantId: string, page: { first: number; after?: { createdAt: string; id: string } }) {
    return listStudies(this.db, tenantId, page);
  }

  /**
   * The study's jobs, read once per study row: a request's status, jobs, table and report fields
   * all resolve from the same row object and share one read.
   */
  children(study: StudyRow): Promise<JobRow[]> {
    let jobs = this.childrenRead.get(study);
    if (!jobs) {
      jobs = studyJobs(this.db, study.id);
      this.childrenRead.set(study, jobs);
      jobs.catch(() => this.childrenRead.delete(study));
    }
    return jobs;
  }

  private readonly childrenRead = new WeakMap<StudyRow, Promise<JobRow[]>>();

  async status(study: StudyRow): Promise<StudyStatus> {
    return studyStatus(
      study.cancelled_at !== null,
      (await this.children(study)).map((j) => j.status),
    );
  }

  async table(study: StudyRow): Promise<StudyTableRow[]> {
    return studyTable(this.db, await this.children(study));
  }

  /** The report bundle once every child has ended (built on first request); null before. */
  async report(study: StudyRow): Promise<StoredReport | null> {
    if (study.report) return study.report;
    const children = await this.children(study);
    if (children.length === 0 || children.some((j) => isLive(j.status))) return null;
    const status = studyStatus(
      study.cancelled_at !== null,
      children.map((j) => j.status),
    );
    const report = await buildStudyReport(this.db, this.store, study, children, status);
    await setStudyReport(this.db, study.id, report);
    return report;
  }

  async launch(tenantId: string, input: StudyInput): Promise<StudyRow> {
    checkString(input.idempotencyKey, "idempotencyKey", INPUT_LIMITS.idempotencyKeyChars);
    const { idempotencyKey, ...rest } = input;
    const inputHash = inputHashOf(rest);
    const existing = await studyByKey(this.db, tenantId, idempotencyKey);
    if (existing) return sameOrConflict(existing, inputHash);
    const labels = checkLabels(input.labels, "labels");
    const externalId =
      checkOptionalString(input.externalId, "externalId", INPUT_LIMITS.externalIdChars) ?? null;
    const children = this.childInputs(input, labels);
    const admitted: Awaited<ReturnType<JobService["admit"]>>[] = [];
    for (const [i, child] of children.entries()) {
      admitted.push(await this.jobs.admit(tenantId, child).catch((e: unknown) => rethrowFor(e, child.at, i)));
    }
    const spec: StudySpec = {
      methods: input.methods.map((m) => ({ method: m.method, hyperparameters: m.hyperparameters ?? {} })),
      seeds: input.seeds,
      trainDatasetId: input.trainDatasetId,
      holdoutDatasetId: input.holdoutDatasetId,
      testDatasetId: input.testDatasetId,
      asrTestDatasetId: input.asrTestDatasetId ?? null,
      target: input.target ?? null,
      architecture: input.architecture ?? null,
    };
    const created = await transaction(this.db, async (tx) => {
      const study = await insertStudy(tx, {
        tenant_id: tenantId,
        idempotency_key: idempotencyKey,
        input_hash: inputHash,
        spec,
        labels,
        external_id: externalId,
      });
      if (!study) return null; // the same key, launched concurrently
      await this.quotas.reserve(tx, tenantId, { liveJobs: admitted.length });
      const jobs: JobRow[] = [];
      for (const [i, fields] of admitted.entries()) {
        const key = `study/${study.id}/${String(i).padStart(4, "0")}`;
        const [job] = await insertJob(tx, {
          tenantId,
          idempotencyKey: key,
          inputHash: inputHashOf({ study: study.id, i }),
          ...fields,
          studyId: study.id,
        });
        jobs.push(job);
      }
      return { study, jobs };
    });
    if (!created)
      return sameOrConflict((await studyByKey(this.db, tenantId, idempotencyKey)) as StudyRow, inputHash);
    for (const job of created.jobs) await this.jobs.queueNew(job);
    return created.study;
  }

  /** Every child launch, in order (method by method, seed by seed), with where its input came from. */
  private childInputs(input: StudyInput, labels: Record<string, string>) {
    if (!Array.isArray(input.methods) || input.methods.length === 0)
      throw badInput("a study needs at least one method", "methods");
    if (!Array.isArray(input.seeds) || input.seeds.length === 0)
      throw badInput("a study needs at least one seed", "seeds");
    if (new Set(input.seeds).size !== input.seeds.length) throw badInput("seeds repeat", "seeds");
    for (const seed of input.seeds)
      if (!Number.isInteger(seed) || seed < 0) throw badInput("seeds must be non-negative integers", "seeds");
    const count = input.methods.length * input.seeds.length;
    if (count > this.maxJobs)
      throw badInput(
        `${input.methods.length} methods x ${input.seeds.length} seeds = ${count} jobs; a study launches at most ${this.maxJobs}`,
        "methods",
      );
    return input.methods.flatMap((m, i) => {
      if (m.method === SCAN_METHOD) throw badInput("SCAN trains no model to compare", `methods[${i}].method`);
      return input.seeds.map((seed) => ({
        at: i,
        method: m.method,
        hyperparameters: m.hyperparameters ?? {},
        seed,
        architecture: input.architecture,
        trainDatasetId: input.trainDatasetId,
        holdoutDatasetId: input.holdoutDatasetId,
        testDatasetId: input.testDatasetId,
        asrTestDatasetId: input.asrTestDatasetId,
        target: input.target,
        resources: input.resources,
        labels,
      }));
    });
  }

  /** Cancels every live child; the study ends CANCELLED once they have stopped. */
  async cancel(tenantId: string, id: string): Promise<StudyRow> {
    const study = await getStudy(this.db, tenantId, id);
    if (!study) throw notFound("study", id);
    const children = await this.children(study);
    if (!children.some((j) => isLive(j.status)))
      throw precondition(`study is ${await this.status(study)}; only running studies can be cancelled`);
    await markStudyCancelled(this.db, study.id);
    for (const job of children) {
      if (isLive(job.status)) await this.jobs.cancel(tenantId, job.id).catch(() => {}); // it ended meanwhile
    }
    return (await getStudy(this.db, tenantId, id)) as StudyRow;
  }
}

function sameOrConflict(study: StudyRow, inputHash: string): StudyRow {
  if (study.input_hash !== inputHash)
    throw conflict("this idempotencyKey was already used for a different study; use a new key");
  return study;
}

/** A child's refusal, named by the study's own field (methods[i].…) where it concerns the method. */
function rethrowFor(error: unknown, methodIndex: number, _child: number): never {
  if (!(error instanceof ServiceError)) throw error;
  const field = String(error.details.field ?? "");
  if (field === "method" || field.startsWith("hyperparameters")) {
    throw new ServiceError(error.code, `methods[${methodIndex}]: ${error.message}`, {
      ...error.details,
      field: `methods[${methodIndex}].${field}`,
    });
  }
  throw error;
}
