/**
 * Models their users bring: a safetensors file of a catalog architecture, uploaded to a signed
 * URL like a dataset, then checked on a worker (sha256, then the trainer's `check-model`: every
 * tensor's name, shape, dtype and values against the architecture). A READY model can be
 * evaluated (evaluateModel) and defended by the post-training methods (launchTraining modelId).
 */
import { randomUUID } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DataSource } from "typeorm";
import {
  claimModel,
  getModel,
  insertModel,
  listModels,
  type ModelRow,
  modelAwaitingUpload,
  modelHeartbeat,
  setModelStatus,
  softDeleteModel,
  staleModels,
} from "../db/models.ts";
import { transaction } from "../db/sql.ts";
import { badInput, notFound, precondition } from "../errors.ts";
import { checkString, INPUT_LIMITS } from "../input-limits.ts";
import type { JobQueue } from "../queue/job-queue.ts";
import { keys } from "../storage/keys.ts";
import type { ObjectStore } from "../storage/object-store.ts";
import type { QuotaService } from "../tenants/quota.ts";
import { trainerCatalog } from "../trainer/catalog.ts";
import { runTrainerCommand, trainerRejection } from "../trainer/process.ts";

export type { ModelRow };

export const MODEL_DTYPES = { FLOAT32: "F32", FLOAT16: "F16", BFLOAT16: "BF16" } as const;
export type ModelDtype = keyof typeof MODEL_DTYPES;
const UPLOAD_URL_SECONDS = 900;
export const MAX_CHECK_ATTEMPTS = 3;
const MAX_SIDE = 4096;
const MAX_CLASSES = 100_000;

export interface ModelUploadInput {
  name: string;
  architecture: string;
  inputShape: { height: number; width: number; channels: number };
  numClasses: number;
  dtype: ModelDtype;
  /** What the model was trained on: (x - mean) / std of images in [0,1], per channel. */
  preprocessing?: { mean: number[]; std: number[] } | null;
  classNames?: string[] | null;
  /** WRN only: the block the stem ends with (4, 5 or 6), which names the tensors. */
  stemEndBlock?: number | null;
  sizeBytes: number;
  sha256: string;
}

export class ModelService {
  constructor(
    private readonly db: DataSource,
    private readonly store: ObjectStore,
    private readonly queue: JobQueue,
    private readonly quotas: QuotaService,
    private readonly maxUploadBytes: number,
  ) {}

  get(tenantId: string, id: string): Promise<ModelRow | null> {
    return getModel(this.db, tenantId, id);
  }

  list(tenantId: string, page: { first: number; after?: { createdAt: string; id: string } }) {
    return listModels(this.db, tenantId, page);
  }

  acceptsUpload(key: string): Promise<boolean> {
    return modelAwaitingUpload(this.db, key);
  }

  async createUpload(tenantId: string, input: ModelUploadInput) {
    checkString(input.name, "name", INPUT_LIMITS.datasetNameChars);
    const architectures = trainerCatalog().data.architectures;
    if (!architectures.includes(input.architecture))
      throw badInput(
        `unknown architecture ${input.architecture}; known: ${architectures.join(", ")}`,
        "architecture",
      );
    const { height, width, channels } = input.inputShape ?? ({} as ModelUploadInput["inputShape"]);
    for (const [field, side] of [
      ["inputShape.height", height],
      ["inputShape.width", width],
    ] as const)
      if (!Number.isInteger(side) || side < 1 || side > MAX_SIDE)
        throw badInput(`must be 1..${MAX_SIDE}`, field);
    if (channels !== 1 && channels !== 3) throw badInput("must be 1 or 3", "inputShape.channels");
    if (!Number.isInteger(input.numClasses) || input.numClasses < 2 || input.numClasses > MAX_CLASSES)
      throw badInput(`must be 2..${MAX_CLASSES}`, "numClasses");
    if (!(input.dtype in MODEL_DTYPES)) throw badInput("must be FLOAT32, FLOAT16 or BFLOAT16", "dtype");
    const stemEndBlock = input.stemEndBlock ?? 5;
    if (![4, 5, 6].includes(stemEndBlock)) throw badInput("must be 4, 5 or 6", "stemEndBlock");
    const pre = input.preprocessing ?? null;
    if (pre) {
      if (pre.mean?.length !== channels || pre.std?.length !== channels)
        throw badInput(`mean and std take one value per channel (${channels})`, "preprocessing");
      if (![...pre.mean, ...pre.std].every(Number.isFinite) || !pre.std.every((s) => s > 0))
        throw badInput("mean must be finite and std positive", "preprocessing");
    }
    if (input.classNames && input.classNames.length !== input.numClasses)
      throw badInput(`${input.classNames.length} names for ${input.numClasses} classes`, "classNames");
    if (!Number.isInteger(input.sizeBytes) || input.sizeBytes < 8 || input.sizeBytes > this.maxUploadBytes)
      throw badInput(`sizeBytes must be 8..${this.maxUploadBytes}`, "sizeBytes");
    if (!/^[0-9a-f]{64}$/.test(input.sha256?.toLowerCase() ?? ""))
      throw badInput("must be 64 hex digits", "sha256");
    const id = randomUUID();
    const key = keys.model(tenantId, id);
    const model = await transaction(this.db, async (tx) => {
      await this.quotas.reserve(tx, tenantId, { bytes: input.sizeBytes });
      return insertModel(tx, {
        id,
        tenant_id: tenantId,
        name: input.name,
        architecture: input.architecture,
        height,
        width,
        channels,
        num_classes: input.numClasses,
        class_names: input.classNames ?? null,
        dtype: MODEL_DTYPES[input.dtype],
        stem_end_block: stemEndBlock,
        preprocessing: pre,
        size_bytes: input.sizeBytes,
        sha256: input.sha256.toLowerCase(),
        storage_key: key,
      });
    });
    const target = await this.store.uploadUrl(key, {
      expiresInSeconds: UPLOAD_URL_SECONDS,
      sizeBytes: input.sizeBytes,
    });
    return {
      model,
      upload: { part: "model", ...target, expiresAt: new Date(Date.now() + UPLOAD_URL_SECONDS * 1000) },
    };
  }

  /** The file is there: check it on a worker (VALIDATING, then READY or FAILED). */
  async complete(tenantId: string, id: string): Promise<ModelRow> {
    const model = await getModel(this.db, tenantId, id);
    if (!model) throw notFound("model", id);
    if (model.status !== "AWAITING_UPLOAD") return model;
    const stored = await this.store.stat(model.storage_key);
    if (!stored) throw precondition("the model file has not been uploaded yet");
    if (stored.sizeBytes !== Number(model.size_bytes))
      throw precondition(`the upload holds ${stored.sizeBytes} bytes, ${model.size_bytes} were declared`);
    await setModelStatus(this.db, id, ["AWAITING_UPLOAD"], "VALIDATING");
    await this.queue.enqueue("poison", { modelId: id, attempt: 1 });
    return (await getModel(this.db, tenantId, id)) as ModelRow;
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const model = await getModel(this.db, tenantId, id);
    if (!model) throw notFound("model", id);
    await softDeleteModel(this.db, tenantId, id);
    await this.store.deletePrefix(keys.modelPrefix(tenantId, id));
    return true;
  }

  /**
   * A worker's check of an uploaded model (queue `poison`, message {modelId, attempt}), with a
   * heartbeat while it runs; a worker lost meanwhile is noticed by reapStale.
   */
  async validate(
    message: { modelId: string; attempt: number },
    scratchDir: string,
    opts: { python?: string; heartbeatSeconds?: number } = {},
  ): Promise<void> {
    const model = await claimModel(this.db, message.modelId, message.attempt);
    if (!model) return;
    const beat = setInterval(
      () => modelHeartbeat(this.db, model.id, message.attempt).catch(() => {}),
      (opts.heartbeatSeconds ?? 5) * 1000,
    );
    const dir = join(scratchDir, `model-${model.id}-${message.attempt}`);
    const fail = (reason: string) =>
      setModelStatus(this.db, model.id, ["VALIDATING"], "FAILED", { failureReason: reason });
    try {
      await mkdir(dir, { recursive: true });
      const file = join(dir, "model.safetensors");
      const got = await this.store.downloadToFile(model.storage_key, file);
      if (got.sha256 !== model.sha256) {
        await fail(`SHA256_MISMATCH: the file's sha256 is ${got.sha256}, ${model.sha256} was declared`);
        return;
      }
      const spec = { ...modelConfig(model), file, dtype: model.dtype };
      await writeFile(join(dir, "check.json"), JSON.stringify(spec));
      const result = await runTrainerCommand(["check-model", "--spec", join(dir, "check.json")], opts.python);
      if (result.code === 0) {
        const { tensors, parameters } = JSON.parse(result.stdout.trim().split("\n").at(-1) as string);
        await setModelStatus(this.db, model.id, ["VALIDATING"], "READY", { tensors, parameters });
        return;
      }
      if (result.code !== 2)
        throw new Error(`check-model exited ${result.code}: ${result.stderr.slice(-500)}`); // retried
      await fail(`MODEL_MISMATCH: ${trainerRejection(result.stderr).message.slice(0, 2000)}`);
    } finally {
      clearInterval(beat);
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Checks nobody runs any more (the worker died: no heartbeat for `staleAfterSeconds`) go back to
   * the queue as their next attempt; after MAX_CHECK_ATTEMPTS the model FAILS with WORKER_LOST.
   * Returns how many models it moved.
   */
  async reapStale(staleAfterSeconds: number): Promise<number> {
    const stale = await staleModels(this.db, staleAfterSeconds);
    for (const model of stale) {
      if (model.processing_attempt >= MAX_CHECK_ATTEMPTS)
        await setModelStatus(this.db, model.id, ["VALIDATING"], "FAILED", {
          failureReason:
            "WORKER_LOST: the workers checking this model stopped sending heartbeats; no attempts left",
        });
      else await this.queue.enqueue("poison", { modelId: model.id, attempt: model.processing_attempt + 1 });
    }
    return stale.length;
  }
}

/** Where a job starting from `model` finds it: model.safetensors (sha256 checked) and config.json in `dir`. */
export async function stageModel(store: ObjectStore, model: ModelRow, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const got = await store.downloadToFile(model.storage_key, join(dir, "model.safetensors"));
  if (got.sha256 !== model.sha256) throw new Error(`model ${model.id} does not match its sha256`);
  await writeFile(join(dir, "config.json"), JSON.stringify(modelConfig(model)));
  return dir;
}

/** The config.json an exported trapdoor model carries, for an uploaded one. */
export function modelConfig(model: ModelRow): Record<string, unknown> {
  return {
    architecture: model.architecture,
    inChannels: model.channels,
    numClasses: model.num_classes,
    height: model.height,
    width: model.width,
    stemEndBlock: model.stem_end_block,
    faithfulWrn: true,
    classNames: model.class_names ?? Array.from({ length: model.num_classes }, (_, i) => String(i)),
    ...(model.preprocessing ? { preprocessing: model.preprocessing } : {}),
  };
}
