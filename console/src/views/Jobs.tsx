/** Jobs: the tenant's jobs, newest first, filtered and paged, kept live by jobsUpdated. */
import { useEffect, useState } from "preact/hooks";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { Pager, usePages } from "../components/Pager.tsx";
import { ProgressBar, Status } from "../components/Status.tsx";
import { percent, shortId, when } from "../format.ts";
import { useApi, useQuery, useTitle } from "../hooks.ts";
import { href } from "../router.ts";
import type { JobStatus, Metrics, PageInfo, Progress, TrainingJob } from "../schema.ts";

export type JobRow = Pick<TrainingJob, "id" | "method" | "architecture" | "status" | "createdAt"> & {
  progress: Pick<Progress, "fraction" | "stage" | "epoch" | "epochs"> | null;
  metrics: Pick<Metrics, "asr" | "ca" | "mse"> | null;
};

export const JOB_ROW =
  "id method architecture status createdAt progress { fraction stage epoch epochs } metrics { asr ca mse }";
const JOBS = `query Jobs($first: Int, $after: String, $status: JobStatus, $method: String) {
  jobs(first: $first, after: $after, status: $status, method: $method) { edges { node { ${JOB_ROW} } } pageInfo { hasNextPage endCursor } }
  methods { name } }`;
const JOBS_UPDATED = `subscription { jobsUpdated { ${JOB_ROW} } }`;
const PAGE_SIZE = 20;
const STATUSES: JobStatus[] = [
  "QUEUED",
  "STARTING",
  "RUNNING",
  "CANCELLING",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
];

interface JobsData {
  jobs: { edges: { node: JobRow }[]; pageInfo: PageInfo };
  methods: { name: string }[];
}

export function Jobs() {
  useTitle("Jobs");
  const api = useApi();
  const [status, setStatus] = useState("");
  const [method, setMethod] = useState("");
  const pages = usePages();
  const after = pages.after;
  const jobs = useQuery<JobsData>(JOBS, {
    first: PAGE_SIZE,
    after,
    status: status || null,
    method: method || null,
  });
  const [live, setLive] = useState<"on" | "off">("off");

  useEffect(() => api.onConnection((connected) => setLive(connected ? "on" : "off")), [api]);
  useEffect(() => {
    return api.subscribe<{ jobsUpdated: JobRow }>(
      JOBS_UPDATED,
      {},
      ({ jobsUpdated: job }) =>
        jobs.set((data) => {
          if (!data) return data;
          const edges = data.jobs.edges;
          const at = edges.findIndex((e) => e.node.id === job.id);
          const matches = (!status || job.status === status) && (!method || job.method === method);
          if (at >= 0) {
            const next = edges.slice();
            if (matches) next[at] = { node: job };
            else next.splice(at, 1);
            return { ...data, jobs: { ...data.jobs, edges: next } };
          }
          // A job not on this page: a new one belongs at the top of the first page.
          if (after === null && matches)
            return { ...data, jobs: { ...data.jobs, edges: [{ node: job }, ...edges] } };
          return data;
        }),
      () => setLive("off"),
    );
  }, [api, status, method, after]);

  const resetPages = pages.first;
  const edges = jobs.data?.jobs.edges ?? [];
  return (
    <section aria-labelledby="jobs-title">
      <div class="view-head">
        <h1 id="jobs-title">Jobs</h1>
        <span class={`live live-${live}`} role="status">
          {live === "on" ? "Live" : "Not live"}
        </span>
        <a class="button" href={href.launch()}>
          Launch a job
        </a>
      </div>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select
            value={status}
            onChange={(e) => {
              setStatus((e.target as HTMLSelectElement).value);
              resetPages();
            }}
          >
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Method
          <select
            value={method}
            onChange={(e) => {
              setMethod((e.target as HTMLSelectElement).value);
              resetPages();
            }}
          >
            <option value="">any</option>
            {(jobs.data?.methods ?? []).map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorMessage error={jobs.error} retry={jobs.reload} />
      <table class="data">
        <caption class="visually-hidden">Jobs, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Method</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col">ASR</th>
            <th scope="col">CA</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {edges.map(({ node: job }) => (
            <tr key={job.id} data-job={job.id}>
              <td>
                <a href={href.job(job.id)} class="mono">
                  {shortId(job.id)}
                </a>
              </td>
              <td>{job.method}</td>
              <td>
                <Status value={job.status} />
              </td>
              <td>
                {job.progress ? (
                  <ProgressBar
                    fraction={job.progress.fraction}
                    label={`progress of job ${shortId(job.id)}`}
                  />
                ) : (
                  "—"
                )}
              </td>
              <td class="num">{percent(job.metrics?.asr)}</td>
              <td class="num">{percent(job.metrics?.ca)}</td>
              <td>{when(job.createdAt)}</td>
            </tr>
          ))}
          {edges.length === 0 && !jobs.loading ? (
            <tr>
              <td colSpan={7}>No jobs{status || method ? " match these filters" : " yet"}.</td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <Pager label="Pages of jobs" pages={pages} pageInfo={jobs.data?.jobs.pageInfo} />
    </section>
  );
}
