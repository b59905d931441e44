import { TrapdoorError } from "./errors.ts";
import { JOB, JOB_UPDATED, type Job, TERMINAL_STATUSES } from "./queries.ts";
import type { ApiClient } from "./transport.ts";

export interface FollowOptions {
  /** Poll interval when the WebSocket is unavailable. */
  pollMs?: number;
  /** Told why live updates were given up for polling. */
  onFallback?: (reason: string) => void;
}

/**
 * Follow a job until it ends, calling `onUpdate` with every new state; resolves with the final
 * state. Live over the jobUpdated subscription; when the WebSocket cannot be opened (or is lost
 * for good), by polling the job query instead. API errors (NOT_FOUND, auth) end it at once.
 */
export async function followJob(
  api: ApiClient,
  id: string,
  onUpdate: (job: Job) => void,
  options: FollowOptions = {},
): Promise<Job> {
  try {
    return await viaSubscription(api, id, onUpdate);
  } catch (error) {
    if (!(error instanceof TrapdoorError) || error.kind !== "network") throw error;
    options.onFallback?.(error.message);
    return viaPolling(api, id, onUpdate, options.pollMs ?? 2000);
  }
}

function viaSubscription(api: ApiClient, id: string, onUpdate: (job: Job) => void): Promise<Job> {
  return new Promise((resolve, reject) => {
    let last: Job | undefined;
    api.subscribe<{ jobUpdated: Job }>(
      JOB_UPDATED,
      { id },
      {
        next: (data) => {
          last = data.jobUpdated;
          onUpdate(last);
        },
        error: reject,
        complete: () =>
          last && TERMINAL_STATUSES.includes(last.status)
            ? resolve(last)
            : reject(new TrapdoorError("network", "the subscription ended before the job did")),
      },
    );
  });
}

async function viaPolling(
  api: ApiClient,
  id: string,
  onUpdate: (job: Job) => void,
  everyMs: number,
): Promise<Job> {
  let seen = "";
  for (;;) {
    const { job } = await api.request<{ job: Job | null }>(JOB, { id }, { idempotent: true });
    if (!job) throw new TrapdoorError("api", `job ${id} does not exist`, "NOT_FOUND");
    const state = JSON.stringify(job);
    if (state !== seen) {
      seen = state;
      onUpdate(job);
    }
    if (TERMINAL_STATUSES.includes(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
