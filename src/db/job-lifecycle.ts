/** Job states and the transitions allowed between them (DESIGN.md, "Job lifecycle"). */

export type JobStatus =
  | "VALIDATING"
  | "QUEUED"
  | "STARTING"
  | "RUNNING"
  | "UPLOADING"
  | "SUCCEEDED"
  | "FAILED"
  | "CANCELLING"
  | "CANCELLED";

export const LIVE_STATES: JobStatus[] = [
  "VALIDATING",
  "QUEUED",
  "STARTING",
  "RUNNING",
  "UPLOADING",
  "CANCELLING",
];
/** States in which a worker owns the job and must keep its heartbeat fresh. */
export const WORKER_STATES: JobStatus[] = ["STARTING", "RUNNING", "UPLOADING", "CANCELLING"];

const ALLOWED: Record<JobStatus, JobStatus[]> = {
  VALIDATING: ["QUEUED", "FAILED"],
  // QUEUED appears as a target of the worker states: an infrastructure failure re-queues the job.
  QUEUED: ["STARTING", "CANCELLING", "FAILED"],
  STARTING: ["RUNNING", "QUEUED", "FAILED", "CANCELLING"],
  RUNNING: ["UPLOADING", "QUEUED", "FAILED", "CANCELLING"],
  UPLOADING: ["SUCCEEDED", "QUEUED", "FAILED", "CANCELLING"],
  CANCELLING: ["CANCELLED", "FAILED"],
  SUCCEEDED: [],
  FAILED: ["QUEUED"],
  CANCELLED: ["QUEUED"],
};

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return ALLOWED[from].includes(to);
}

/** The states from which `to` may be entered. */
export function sourcesOf(to: JobStatus): JobStatus[] {
  return (Object.keys(ALLOWED) as JobStatus[]).filter((from) => ALLOWED[from].includes(to));
}

export function isLive(status: JobStatus): boolean {
  return LIVE_STATES.includes(status);
}

export type StudyStatus = "RUNNING" | "SUCCEEDED" | "PARTIAL" | "FAILED" | "CANCELLED";

/** A study's status from its jobs': RUNNING while one is live; then SUCCEEDED (all), FAILED (none), PARTIAL, or CANCELLED. */
export function studyStatus(cancelled: boolean, statuses: JobStatus[]): StudyStatus {
  if (statuses.some(isLive)) return "RUNNING";
  const succeeded = statuses.filter((s) => s === "SUCCEEDED").length;
  if (succeeded === statuses.length && statuses.length > 0) return "SUCCEEDED";
  if (cancelled) return "CANCELLED";
  return succeeded === 0 ? "FAILED" : "PARTIAL";
}
