/** The GraphQL documents the client sends, and the shapes of what they return (statuses and roles typed from the schema). */
import type { DatasetRole, DatasetStatus, JobStatus, StudyStatus } from "./generated/schema.ts";

export interface Tenant {
  id: string;
  name: string;
}

export interface Dataset {
  id: string;
  name: string;
  role: DatasetRole;
  format: string;
  status: DatasetStatus;
  failureReason: string | null;
  sizeBytes: number;
  count: number | null;
  height: number | null;
  width: number | null;
  channels: number | null;
  numClasses: number | null;
  createdAt: string;
}

export interface JobProgress {
  stage: string | null;
  epoch: number | null;
  epochs: number | null;
  fraction: number;
  imagesPerSecond: number | null;
}

export interface JobMetrics {
  asr: number | null;
  ca: number | null;
  mse: number | null;
  stage1Asr: number | null;
  stage1Ca: number | null;
}

export interface Job {
  id: string;
  method: string;
  architecture: string;
  status: JobStatus;
  attempt: number;
  progress: JobProgress | null;
  metrics: JobMetrics | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export interface Artifact {
  kind: string;
  format: string;
  sizeBytes: number;
  sha256: string;
  downloadUrl: string;
}

const DATASET_FIELDS = `id name role format status failureReason sizeBytes count height width channels numClasses createdAt`;
const JOB_FIELDS = `id method architecture status attempt
  progress { stage epoch epochs fraction imagesPerSecond }
  metrics { asr ca mse stage1Asr stage1Ca }
  error { code message } createdAt updatedAt`;

export const VIEWER = `query { viewer { id name } }`;

export const DATASET = `query($id: ID!) { dataset(id: $id) { ${DATASET_FIELDS} } }`;
export const DATASETS = `query($first: Int, $after: String, $role: DatasetRole) {
  datasets(first: $first, after: $after, role: $role) { edges { node { ${DATASET_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;
export const CREATE_UPLOAD = `mutation($input: CreateDatasetUploadInput!) {
  createDatasetUpload(input: $input) { dataset { ${DATASET_FIELDS} } uploads { part url method headers expiresAt } } }`;
export const COMPLETE_UPLOAD = `mutation($id: ID!) { completeDatasetUpload(id: $id) { ${DATASET_FIELDS} } }`;

export const JOB = `query($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`;
export const JOBS = `query($first: Int, $after: String, $status: JobStatus) {
  jobs(first: $first, after: $after, status: $status) { edges { node { ${JOB_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;
export const LAUNCH = `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { ${JOB_FIELDS} } }`;
export const JOB_UPDATED = `subscription($id: ID!) { jobUpdated(id: $id) { ${JOB_FIELDS} } }`;
export const JOB_ARTIFACTS = `query($id: ID!, $expires: Int) { job(id: $id) { id status
  artifacts { kind format sizeBytes sha256 downloadUrl(expiresInSeconds: $expires) } } }`;

export const TERMINAL_STATUSES: readonly string[] = [
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
] satisfies JobStatus[];

export interface Page<T> {
  edges: { node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export interface Study {
  id: string;
  status: StudyStatus;
  table: {
    job: { id: string };
    method: string;
    seed: number;
    status: string;
    asr: number | null;
    ca: number | null;
    mse: number | null;
    runtimeSeconds: number | null;
    healthVerdict: string | null;
  }[];
}

export const STUDY = `query($id: ID!) { study(id: $id) { id status
  table { job { id } method seed status asr ca mse runtimeSeconds healthVerdict } } }`;

export const SCAN = `mutation($input: ScanDatasetInput!) { scanDataset(input: $input) { ${JOB_FIELDS} } }`;
export const SANITIZE = `mutation($input: SanitizeDatasetInput!) { sanitizeDataset(input: $input) { ${DATASET_FIELDS} } }`;
export const LAUNCH_STUDY = `mutation($input: LaunchStudyInput!) { launchStudy(input: $input) { id status
  table { job { id } method seed status asr ca mse runtimeSeconds healthVerdict } } }`;

export interface SuspiciousSample {
  rank: number;
  index: number;
  score: number;
  label: number;
  thumbnailUrl: string | null;
}

export interface CalibrationRate {
  rate: number | null;
  count: number;
  of: number;
}

export interface CalibrationRates {
  cells: number;
  falsePositiveRate: CalibrationRate;
  cleanCalledClean: CalibrationRate;
  falseNegativeRate: CalibrationRate;
  poisonedCalledClean: CalibrationRate;
  likelyTargetAccuracy: CalibrationRate;
}

/** How far a verdict can be trusted: its thresholds' error rates out of sample. */
export interface HealthCalibration {
  dataset: string;
  appliesTo: string;
  thresholds: Record<string, number>;
  fitOn: string[];
  fitErrors: number;
  outOfSample: CalibrationRates;
  outOfSampleAtLeast5Percent: CalibrationRates;
  groups: { name: string; rates: CalibrationRates }[];
  source: string;
}

export interface Health {
  verdict: "CLEAN" | "POISONED" | "INCONCLUSIVE";
  likelyTarget: number | null;
  evidence: Record<string, unknown>;
  calibration: HealthCalibration | null;
  sampleCount: number;
  suspicious: SuspiciousSample[];
}

const RATE = "{ rate count of }";
const RATES = `{ cells falsePositiveRate ${RATE} cleanCalledClean ${RATE} falseNegativeRate ${RATE} poisonedCalledClean ${RATE} likelyTargetAccuracy ${RATE} }`;
const CALIBRATION = `calibration { dataset appliesTo thresholds fitOn fitErrors source outOfSample ${RATES}
  outOfSampleAtLeast5Percent ${RATES} groups { name rates ${RATES} } }`;
export const HEALTH = `query($id: ID!, $first: Int, $after: String) { job(id: $id) { health { verdict likelyTarget evidence sampleCount ${CALIBRATION}
  suspicious(first: $first, after: $after) { edges { node { rank index score label thumbnailUrl } } pageInfo { hasNextPage endCursor } } } } }`;
export const DATASET_DOWNLOAD = `query($id: ID!, $format: DatasetDownloadFormat!, $part: String) { dataset(id: $id) { downloadUrl(format: $format, part: $part) } }`;
