import { randomUUID } from "node:crypto";
import type { DataSource } from "typeorm";
import {
  awaitingUpload,
  type DatasetRole,
  type DatasetRow,
  getDataset,
  getDatasets,
  insertDataset,
  insertDerivedDataset,
  listDatasets,
  setDatasetStatus,
  softDeleteDataset,
  type UploadPart,
} from "../db/datasets.ts";
import { liveJobsUsing } from "../db/jobs.ts";
import { transaction } from "../db/sql.ts";
import { badInput, conflict, notFound, precondition } from "../errors.ts";
import {
  checkJsonSize,
  checkOptionalString,
  checkString,
  checkStringList,
  decodedBytes,
  INPUT_LIMITS,
} from "../input-limits.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import { keys, rawUploadOwner } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import type { QuotaService } from "../tenants/quota.ts";
import { trainerCatalog } from "../trainer/catalog.ts";
import { type DownloadFormat, datasetDownloadUrl } from "./export.ts";
import { checkIngestOptions, type DatasetFormat, FORMAT_PARTS, IngestError } from "./ingest.ts";
import type { IngestOptions } from "./options.ts";
import { requestSanitize, type SanitizeInput } from "./sanitize.ts";

export type { DatasetRole, DatasetRow };

export interface CreateUploadInput {
  name: string;
  role: DatasetRole;
  format: DatasetFormat;
  sizeBytes?: number | null;
  sha256?: string | null;
  parts?: { name: string; sizeBytes: number; sha256: string }[] | null;
  classNames?: string[] | null;
  /** archive formats: split, resize, channels, cropToRoi (options.ts) */
  options?: Record<string, unknown> | null;
}

/** Options are checked at upload, so a mistake is a BAD_USER_INPUT naming the field, not a FAILED dataset later. */
function uploadOptions(format: DatasetFormat, raw: unknown): IngestOptions {
  try {
    return checkIngestOptions(format, raw);
  } catch (e) {
    if (e instanceof IngestError) throw badInput(e.message, `options${e.field ? `.${e.field}` : ""}`);
    throw e;
  }
}

const decodedSize = (d: DatasetRow) =>
  decodedBytes({
    count: d.count ?? 0,
    height: d.height ?? 0,
    width: d.width ?? 0,
    channels: d.channels ?? 0,
  });

/**
 * Upload URLs live 15 minutes: an S3 presigned PUT cannot be revoked, so a deleted dataset's
 * prefix is purged once its URLs have expired (sweep.ts).
 */
export const UPLOAD_URL_SECONDS = 900;
const SHA256 = /^[0-9a-f]{64}$/;

/**
 * Upload sessions, deletion and poisoning requests. Bytes never pass through GraphQL: clients PUT
 * each part to a signed URL, then `complete` checks sizes and queues the ingest; a worker verifies
 * sha256 and writes the canonical dataset (the format the trainer reads) next to the raw parts
 * (processing.ts). Nothing here decodes an image or runs the trainer.
 */
export class DatasetService {
  constructor(
    private readonly db: DataSource,
    private readonly store: ObjectStore,
    private readonly queue: JobQueue,
    private readonly maxUploadBytes: number,
    private readonly quotas: QuotaService,
  ) {}

  get(tenantId: string, id: string): Promise<DatasetRow | null> {
    return getDataset(this.db, tenantId, id);
  }

  /** A new TRAIN dataset without the samples a job's health report flags (sanitize.ts). */
  sanitize(tenantId: string, input: SanitizeInput): Promise<DatasetRow> {
    return requestSanitize({ db: this.db, queue: this.queue, quotas: this.quotas }, tenantId, input);
  }

  /** A signed download URL of a READY dataset's arrays (export.ts). */
  downloadUrl(
    dataset: DatasetRow,
    request: { format: DownloadFormat; part?: string | null; expiresInSeconds: number },
  ): Promise<string> {
    return datasetDownloadUrl(this.store, dataset, request);
  }

  /**
   * Whether the object store may still take bytes for `key`: only a raw part of a dataset that
   * exists and awaits its upload (a deleted dataset's signed URLs stop working).
   */
  async acceptsUpload(key: string): Promise<boolean> {
    const owner = rawUploadOwner(key);
    return owner !== null && awaitingUpload(this.db, owner.tenantId, owner.datasetId);
  }

  /** Several datasets in one query, in the order asked (null where the tenant has none by that id). */
  async getMany(tenantId: string, ids: readonly string[]): Promise<(DatasetRow | null)[]> {
    const byId = new Map((await getDatasets(this.db, tenantId, ids)).map((d) => [d.id, d]));
    return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
  }

  /** One page (newest first; `first` + 1 rows, so the caller can tell whether more follow). */
  list(
    tenantId: string,
    page: { first: number; after?: { createdAt: string; id: string }; role?: DatasetRole },
  ): Promise<DatasetRow[]> {
    return listDatasets(this.db, tenantId, page);
  }

  async createUpload(tenantId: string, input: CreateUploadInput) {
    checkString(input.name, "name", INPUT_LIMITS.datasetNameChars);
    checkStringList(input.classNames, "classNames", INPUT_LIMITS.classNames, INPUT_LIMITS.classNameChars);
    const expected = FORMAT_PARTS[input.format];
    if (!expected)
      throw badInput(
        `${input.format} is not an upload format; upload one of ${Object.keys(FORMAT_PARTS).join(", ")}`,
        "format",
      );
    const declared =
      input.parts && input.parts.length > 0
        ? input.parts
        : expected.length === 1 && input.sizeBytes != null && input.sha256 != null
          ? [{ name: expected[0] as string, sizeBytes: input.sizeBytes, sha256: input.sha256 }]
          : null;
    if (!declared)
      throw badInput(
        `${input.format} needs ${expected.length === 1 ? "sizeBytes and sha256" : `parts ${expected.join(" and ")}`}`,
        "parts",
      );
    const options = uploadOptions(input.format, input.options);
    const names = declared.map((p) => p.name).sort();
    if (names.join(",") !== [...expected].sort().join(","))
      throw badInput(`${input.format} takes exactly the parts ${expected.join(", ")}`, "parts");
    for (const part of declared) {
      if (!Number.isInteger(part.sizeBytes) || part.sizeBytes <= 0)
        throw badInput(`part ${part.name}: sizeBytes must be a positive integer`, "sizeBytes");
      if (part.sizeBytes > this.maxUploadBytes)
        throw badInput(`part ${part.name} is larger than the ${this.maxUploadBytes}-byte limit`, "sizeBytes");
      if (!SHA256.test(part.sha256.toLowerCase()))
        throw badInput(`part ${part.name}: sha256 must be 64 hex digits`, "sha256");
    }
    const id = randomUUID();
    const parts: UploadPart[] = declared.map((p) => ({
      name: p.name,
      sizeBytes: p.sizeBytes,
      sha256: p.sha256.toLowerCase(),
      key: keys.datasetRaw(tenantId, id, p.name),
    }));
    const sizeBytes = parts.reduce((s, p) => s + p.sizeBytes, 0);
    // The declared size is reserved now: a tenant out of room learns it before sending a byte.
    const dataset = await transaction(this.db, async (tx) => {
      await this.quotas.reserve(tx, tenantId, { bytes: sizeBytes, datasets: 1 });
      return insertDataset(tx, {
        id,
        tenantId,
        name: input.name,
        role: input.role,
        format: input.format,
        status: "AWAITING_UPLOAD",
        parts,
        sizeBytes,
        classNames: input.classNames ?? null,
        ingestOptions: Object.keys(options).length > 0 ? { ...options } : null,
      });
    });
    const uploads = [];
    for (const part of parts) {
      const target = await this.store.uploadUrl(part.key, {
        expiresInSeconds: UPLOAD_URL_SECONDS,
        sizeBytes: part.sizeBytes,
      });
      uploads.push({
        part: part.name,
        ...target,
        expiresAt: new Date(Date.now() + UPLOAD_URL_SECONDS * 1000),
      });
    }
    return { dataset, uploads };
  }

  /** Sizes are checked now (a missing part can still be uploaded); sha256 and contents in the background. */
  async complete(tenantId: string, id: string): Promise<DatasetRow> {
    const dataset = await getDataset(this.db, tenantId, id);
    if (!dataset) throw notFound("dataset", id);
    if (dataset.status !== "AWAITING_UPLOAD")
      throw precondition(`dataset is ${dataset.status}; only an AWAITING_UPLOAD dataset can be completed`);
    for (const part of dataset.parts) {
      const stat = await this.store.stat(part.key);
      if (!stat) throw precondition(`part ${part.name} has not been uploaded yet`);
      if (stat.sizeBytes !== part.sizeBytes) {
        await setDatasetStatus(
          this.db,
          id,
          ["AWAITING_UPLOAD"],
          "FAILED",
          `part ${part.name} is ${stat.sizeBytes} bytes, ${part.sizeBytes} were declared`,
        );
        return (await getDataset(this.db, tenantId, id)) as DatasetRow;
      }
    }
    if (!(await setDatasetStatus(this.db, id, ["AWAITING_UPLOAD"], "VALIDATING")))
      throw conflict("the dataset changed state meanwhile");
    // A message lost here (the process stops before sending it) is sent again by the reaper.
    await this.queue.enqueue("ingest", { datasetId: id, attempt: 1 });
    return (await getDataset(this.db, tenantId, id)) as DatasetRow;
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const dataset = await getDataset(this.db, tenantId, id);
    if (!dataset) throw notFound("dataset", id);
    const live = await liveJobsUsing(this.db, tenantId, id);
    if (live > 0)
      throw conflict(`dataset is used by ${live} live job(s); cancel them or wait until they finish`);
    await softDeleteDataset(this.db, tenantId, id);
    await this.store.deletePrefix(keys.datasetPrefix(tenantId, id));
    return true;
  }

  /** Build a poisoned copy of a READY TRAIN dataset (and its ASR test set) with the trainer's `poison` command. */
  async poison(
    tenantId: string,
    input: {
      sourceId: string;
      testDatasetId?: string | null;
      name?: string | null;
      attack: {
        name: string;
        target: number;
        ratio?: number | null;
        seed?: number | null;
        params?: Record<string, unknown> | null;
      };
    },
  ) {
    checkOptionalString(input.name, "name", INPUT_LIMITS.datasetNameChars);
    checkString(input.attack.name, "attack.name", INPUT_LIMITS.identifierChars);
    checkJsonSize(input.attack.params, "attack.params");
    const source = await getDataset(this.db, tenantId, input.sourceId);
    if (!source) throw notFound("dataset", input.sourceId);
    if (source.status !== "READY")
      throw badInput(`source dataset is ${source.status}, not READY`, "sourceId");
    const test = input.testDatasetId ? await getDataset(this.db, tenantId, input.testDatasetId) : null;
    if (input.testDatasetId && (test?.status !== "READY" || test.role !== "TEST"))
      throw badInput("testDatasetId must be a READY TEST dataset", "testDatasetId");
    const catalog = trainerCatalog();
    const attack = catalog.attack(input.attack.name);
    if (!attack) throw badInput(`unknown attack ${input.attack.name}`, "attack.name");
    const problem = catalog.checkAttackParams(attack, input.attack.params ?? {});
    if (problem) throw badInput(`${problem.field} ${problem.message}`, problem.field);
    const ratio = input.attack.ratio ?? 0.1;
    if (!(ratio > 0 && ratio <= 1)) throw badInput("attack.ratio must be in (0, 1]", "attack.ratio");
    checkReachableRatio(source, input.attack.target, ratio, attack.cleanLabel);
    const record = {
      attack: input.attack.name,
      target: input.attack.target,
      ratio,
      seed: input.attack.seed ?? 0,
      params: input.attack.params ?? {},
    };
    // The ASR_TEST set first: the TRAIN set names it, and the run that builds one builds both.
    const [poisoned, asr] = await transaction(this.db, async (tx) => {
      // A poisoned copy (and its ASR set) is the size of its source once written.
      await this.quotas.reserve(tx, tenantId, {
        datasets: test ? 2 : 1,
        bytes: decodedSize(source) + (test ? decodedSize(test) : 0),
      });
      const asrRow = test
        ? await insertDerivedDataset(tx, {
            tenantId,
            name: `${test.name} + ${input.attack.name} (ASR)`,
            role: "ASR_TEST",
            classNames: test.class_names,
            poison: record,
            sourceId: test.id,
          })
        : null;
      const trainRow = await insertDerivedDataset(tx, {
        tenantId,
        name: input.name ?? `${source.name} + ${input.attack.name}`,
        role: "TRAIN",
        classNames: source.class_names,
        poison: record,
        sourceId: source.id,
        asrDatasetId: asrRow?.id ?? null,
      });
      return [trainRow, asrRow] as const;
    });
    await this.queue.enqueue("poison", { datasetId: poisoned.id, attempt: 1 });
    return { dataset: poisoned, asrTestDataset: asr };
  }
}

/**
 * The trainer's rule (attacks/poisoning.py), checked here so a caller hears it at once: a ratio
 * is applied as asked or refused, never capped. floor(ratio x N) victims, at least one; a
 * clean-label attack finds them in the target class only, a dirty-label one outside it.
 */
function checkReachableRatio(
  source: { count: number | null; class_histogram: number[] | null },
  target: number,
  ratio: number,
  cleanLabel: boolean,
): void {
  const total = source.count ?? 0;
  const histogram = source.class_histogram;
  if (!total || !histogram) return; // a set without counts: the trainer decides
  const wanted = Math.floor(ratio * total + 1e-9);
  if (wanted === 0)
    throw badInput(
      `attack.ratio ${ratio} of ${total} images poisons no image; the smallest that poisons one is ${(1 / total).toPrecision(3)}`,
      "attack.ratio",
    );
  if (!Number.isInteger(target) || target < 0 || target >= histogram.length) return; // the trainer names the bad target
  const inTarget = histogram[target] ?? 0;
  const reachable = cleanLabel ? inTarget : total - inTarget;
  if (wanted > reachable) {
    const pool = cleanLabel
      ? `a clean-label attack can only poison the ${reachable} images of the target class ${target}`
      : `only ${reachable} images are not of the target class ${target}`;
    throw badInput(
      `attack.ratio asks for ${wanted} poisoned images, but ${pool} (ratio at most ${+(reachable / total).toPrecision(6)})`,
      "attack.ratio",
    );
  }
}
