/**
 * TrapdoorClient: the typed verbs a program (and the trapdoor CLI) drives the API with. Inputs
 * are the schema's own input types (generated/schema.ts, GraphQL Code Generator); transfers
 * check sizes and sha256; uploads resume where they stopped when given a state directory.
 */
import { downloadVerified } from "./download.ts";
import { TrapdoorError } from "./errors.ts";
import type {
  CreateDatasetUploadInput,
  LaunchStudyInput,
  LaunchTrainingInput,
  SanitizeDatasetInput,
  ScanDatasetInput,
} from "./generated/schema.ts";
import {
  type Artifact,
  COMPLETE_UPLOAD,
  CREATE_UPLOAD,
  DATASET,
  DATASET_DOWNLOAD,
  type Dataset,
  HEALTH,
  type Health,
  JOB,
  JOB_ARTIFACTS,
  type Job,
  LAUNCH,
  LAUNCH_STUDY,
  SANITIZE,
  SCAN,
  STUDY,
  type Study,
  type SuspiciousSample,
} from "./queries.ts";
import { ApiClient, type Credentials, type RequestOptions } from "./transport.ts";
import {
  describeFile,
  type LocalPart,
  putPart,
  stillValid,
  type UploadState,
  UploadStateStore,
  type UploadTarget,
} from "./upload.ts";
import { type FollowOptions, followJob } from "./watch.ts";

export interface UploadOptions {
  /** Keep upload progress here so an interrupted upload resumes (the URLs in it are credentials: keep it private). */
  stateDir?: string;
  /** Bytes sent for a part (negative when a failed attempt is taken back). */
  onBytes?: (part: string, delta: number) => void;
  /** Called before each part is sent, with its local file. */
  onPart?: (part: LocalPart) => void;
  /** Progress notes for people (e.g. "resuming"). */
  onNote?: (text: string) => void;
}

/** A local file for one part of an upload; `part` null: the format's only part. */
export interface PartFile {
  part: string | null;
  path: string;
}

/** One page of `health` as the HEALTH query returns it. */
interface HealthAnswer {
  job: {
    health:
      | (Omit<Health, "suspicious"> & {
          suspicious: {
            edges: { node: SuspiciousSample }[];
            pageInfo: { hasNextPage: boolean; endCursor: string | null };
          };
        })
      | null;
  } | null;
}

export class TrapdoorClient {
  readonly api: ApiClient;

  constructor(credentials: Credentials, timeoutMs?: number) {
    this.api = new ApiClient(credentials, timeoutMs);
  }

  get endpoint(): string {
    return this.api.endpoint;
  }

  get credentials(): Credentials {
    return this.api.credentials;
  }

  request<T>(
    query: string,
    variables: Record<string, unknown> = {},
    options: RequestOptions = {},
  ): Promise<T> {
    return this.api.request<T>(query, variables, options);
  }

  async dataset(id: string): Promise<Dataset | null> {
    return (await this.request<{ dataset: Dataset | null }>(DATASET, { id }, { idempotent: true })).dataset;
  }

  /**
   * Upload files as one dataset: sizes and sha256 declared, each part streamed to its signed URL
   * (retried), then completed. With `stateDir`, the same upload run again continues where it
   * stopped, skipping the parts already stored. Returns the dataset (VALIDATING or later); wait
   * with waitForDataset. `describe`d parts skip hashing again.
   */
  async uploadDataset(
    input: Omit<CreateDatasetUploadInput, "parts" | "sizeBytes" | "sha256">,
    files: (PartFile | LocalPart)[],
    options: UploadOptions = {},
  ): Promise<Dataset> {
    const parts: LocalPart[] = [];
    for (const file of files)
      parts.push("sha256" in file ? file : { ...file, ...(await describeFile(file.path)) });
    const single = parts.length === 1 && parts[0]?.part === null ? parts[0] : undefined;
    const full: Record<string, unknown> = { ...input };
    if (single) Object.assign(full, { sizeBytes: single.sizeBytes, sha256: single.sha256 });
    else full.parts = parts.map((p) => ({ name: p.part, sizeBytes: p.sizeBytes, sha256: p.sha256 }));

    const states = options.stateDir ? new UploadStateStore(options.stateDir) : null;
    const fingerprint = UploadStateStore.fingerprint({ endpoint: this.endpoint, input: full });
    let state = states ? await this.resumable(states, fingerprint, options.onNote) : null;
    let dataset: Dataset | null = null;
    if (!state) {
      const created = await this.request<{
        createDatasetUpload: { dataset: Dataset; uploads: UploadTarget[] };
      }>(CREATE_UPLOAD, { input: full });
      dataset = created.createDatasetUpload.dataset;
      state = { datasetId: dataset.id, targets: created.createDatasetUpload.uploads, uploaded: [] };
      states?.save(fingerprint, state);
    }
    for (const target of state.targets.filter((t) => !state.uploaded.includes(t.part))) {
      const file = single ?? parts.find((p) => p.part === target.part);
      if (!file) throw new TrapdoorError("api", `the API asked for a part ${target.part} that was not given`);
      options.onPart?.(file);
      await putPart(target, file, (n) => options.onBytes?.(target.part, n));
      state.uploaded.push(target.part);
      states?.save(fingerprint, state);
    }
    const current = await this.dataset(state.datasetId);
    if (current?.status === "AWAITING_UPLOAD")
      dataset = (
        await this.request<{ completeDatasetUpload: Dataset }>(COMPLETE_UPLOAD, { id: state.datasetId })
      ).completeDatasetUpload;
    else dataset = current ?? dataset;
    states?.remove(fingerprint);
    if (!dataset) throw new TrapdoorError("api", `dataset ${state.datasetId} vanished during the upload`);
    return dataset;
  }

  /** A saved upload that can continue: its dataset still awaits the upload and its URLs are valid. */
  private async resumable(
    states: UploadStateStore,
    fingerprint: string,
    onNote?: (text: string) => void,
  ): Promise<UploadState | null> {
    const state = states.load(fingerprint);
    if (!state) return null;
    const status = (await this.dataset(state.datasetId))?.status;
    const pending = state.targets.filter((t) => !state.uploaded.includes(t.part));
    if (status === "AWAITING_UPLOAD" && stillValid(pending)) {
      onNote?.(
        `resuming the upload of dataset ${state.datasetId} (${state.uploaded.length} of ${state.targets.length} parts already stored)`,
      );
      return state;
    }
    if (status === "VALIDATING" || status === "READY")
      return { ...state, uploaded: state.targets.map((t) => t.part) };
    states.remove(fingerprint);
    return null;
  }

  /** Polls until the dataset is READY or FAILED (`onPoll` after each look). */
  async waitForDataset(id: string, onPoll?: (dataset: Dataset) => void, everyMs = 1000): Promise<Dataset> {
    for (;;) {
      const dataset = await this.dataset(id);
      if (!dataset) throw new TrapdoorError("api", `dataset ${id} does not exist`, "NOT_FOUND");
      if (dataset.status !== "VALIDATING" && dataset.status !== "AWAITING_UPLOAD") return dataset;
      onPoll?.(dataset);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }

  async launchTraining(input: LaunchTrainingInput): Promise<Job> {
    // Safe to resend: the idempotency key makes a retried launch return the same job.
    return (await this.request<{ launchTraining: Job }>(LAUNCH, { input }, { idempotent: true }))
      .launchTraining;
  }

  async job(id: string): Promise<Job | null> {
    return (await this.request<{ job: Job | null }>(JOB, { id }, { idempotent: true })).job;
  }

  /** Follows a job (live over WebSocket, else polling) until it ends; resolves with its final state. */
  waitForJob(id: string, onUpdate: (job: Job) => void = () => {}, options: FollowOptions = {}): Promise<Job> {
    return followJob(this.api, id, onUpdate, options);
  }

  /** A finished job's artifacts with fresh download URLs. */
  async artifacts(id: string, expiresInSeconds = 900): Promise<{ status: string; artifacts: Artifact[] }> {
    const { job } = await this.request<{ job: { status: string; artifacts: Artifact[] } | null }>(
      JOB_ARTIFACTS,
      { id, expires: expiresInSeconds },
      { idempotent: true },
    );
    if (!job) throw new TrapdoorError("api", `job ${id} does not exist`, "NOT_FOUND");
    return job;
  }

  /**
   * Download one artifact of a job (by format, e.g. onnx, safetensors, tar) to `file`; kept only
   * when its size and sha256 match what the API reports.
   */
  async download(
    jobId: string,
    file: string,
    pick: { format?: string; kind?: string },
    onBytes?: (n: number) => void,
  ): Promise<Artifact> {
    const { status, artifacts } = await this.artifacts(jobId);
    const artifact = artifacts.find((a) => (pick.kind ? a.kind === pick.kind : a.format === pick.format));
    if (!artifact)
      throw new TrapdoorError(
        "api",
        `job ${jobId} is ${status} and has no ${pick.kind ?? pick.format} artifact`,
        "FAILED_PRECONDITION",
      );
    await downloadVerified(artifact.downloadUrl, file, artifact, onBytes);
    return artifact;
  }

  async scanDataset(input: ScanDatasetInput): Promise<Job> {
    return (await this.request<{ scanDataset: Job }>(SCAN, { input }, { idempotent: true })).scanDataset;
  }

  /** A job's health report with its `suspicious` most suspicious samples (null when it has none). */
  async health(jobId: string, suspicious = 20): Promise<Health | null> {
    const samples: SuspiciousSample[] = [];
    let after: string | null = null;
    for (;;) {
      const answer: HealthAnswer = await this.request(
        HEALTH,
        { id: jobId, first: Math.min(100, Math.max(1, suspicious - samples.length)), after },
        { idempotent: true },
      );
      const health = answer.job?.health;
      if (!answer.job) throw new TrapdoorError("api", `job ${jobId} does not exist`, "NOT_FOUND");
      if (!health) return null;
      samples.push(...health.suspicious.edges.map((e) => e.node));
      const { hasNextPage, endCursor } = health.suspicious.pageInfo;
      if (samples.length >= suspicious || !hasNextPage)
        return { ...health, suspicious: samples.slice(0, suspicious) };
      after = endCursor;
    }
  }

  async sanitizeDataset(input: SanitizeDatasetInput): Promise<Dataset> {
    return (await this.request<{ sanitizeDataset: Dataset }>(SANITIZE, { input })).sanitizeDataset;
  }

  /** A signed URL of a READY dataset's arrays (NPZ, or NPY_PAIR with part images or labels). */
  async datasetDownloadUrl(
    id: string,
    format: "NPZ" | "NPY_PAIR",
    part?: "images" | "labels",
  ): Promise<string> {
    const { dataset } = await this.request<{ dataset: { downloadUrl: string } | null }>(
      DATASET_DOWNLOAD,
      { id, format, part },
      { idempotent: true },
    );
    if (!dataset) throw new TrapdoorError("api", `dataset ${id} does not exist`, "NOT_FOUND");
    return dataset.downloadUrl;
  }

  async launchStudy(input: LaunchStudyInput): Promise<Study> {
    return (await this.request<{ launchStudy: Study }>(LAUNCH_STUDY, { input }, { idempotent: true }))
      .launchStudy;
  }

  async study(id: string): Promise<Study | null> {
    return (await this.request<{ study: Study | null }>(STUDY, { id }, { idempotent: true })).study;
  }
}
