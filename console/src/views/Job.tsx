/**
 * One job: progress with ETA (live through jobUpdated), per-epoch curves per metric and stage,
 * transitions, log tail, artifacts, reconstruction previews, and the health report.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { BarChart, LineChart, type Series } from "../components/Chart.tsx";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { ProgressBar, Status } from "../components/Status.tsx";
import { bytes, decimal, duration, percent, when } from "../format.ts";
import { useApi, useMutation, useQuery, useTitle } from "../hooks.ts";
import { href } from "../router.ts";
import type {
  Artifact,
  CalibrationRate,
  Health,
  JobError,
  MetricPoint,
  SuspiciousSample,
  TrainingJob,
  Transition,
} from "../schema.ts";
import { JOB_ROW, type JobRow } from "./Jobs.tsx";

type JobDetail = JobRow &
  Pick<TrainingJob, "logTail" | "waitingReason" | "hyperparameters" | "attempt" | "worker" | "updatedAt"> & {
    transitions: Transition[];
    error: JobError | null;
    history: Pick<MetricPoint, "stage" | "epoch" | "name" | "value">[];
    artifacts: Pick<Artifact, "kind" | "format" | "sizeBytes" | "downloadUrl">[];
    health:
      | (Pick<Health, "verdict" | "likelyTarget" | "evidence" | "sampleCount"> & {
          calibration: Calibration | null;
          suspicious: { edges: { node: SuspiciousSample }[] };
        })
      | null;
  };

const JOB = `query Job($id: ID!) { job(id: $id) { ${JOB_ROW} logTail waitingReason hyperparameters attempt worker updatedAt
  progress { imagesPerSecond } transitions { from to reason at } error { code message }
  history { stage epoch name value } artifacts { kind format sizeBytes downloadUrl }
  health { verdict likelyTarget evidence sampleCount
    calibration { dataset source outOfSample { falsePositiveRate { count of } falseNegativeRate { count of } likelyTargetAccuracy { count of } }
      outOfSampleAtLeast5Percent { falseNegativeRate { count of } } }
    suspicious(first: 24) { edges { node { rank index score label thumbnailUrl } } } } } }`;
const UPDATED = `subscription($id: ID!) { jobUpdated(id: $id) { ${JOB_ROW} progress { imagesPerSecond } } }`;
const CANCEL = `mutation($id: ID!) { cancelJob(id: $id) { id status } }`;
const RETRY = `mutation($id: ID!) { retryJob(id: $id) { id status } }`;
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

/** Seconds left, from the fraction done and the time since the job last began RUNNING. */
function eta(job: JobDetail, now: number): number | null {
  const fraction = job.progress?.fraction ?? 0;
  const running = [...job.transitions].reverse().find((t) => t.to === "RUNNING");
  if (job.status !== "RUNNING" || !running || fraction < 0.02) return null;
  const elapsed = (now - Date.parse(running.at)) / 1000;
  return (elapsed * (1 - fraction)) / fraction;
}

/** One chart per metric name, one line per stage. */
function curves(history: JobDetail["history"]): { name: string; series: Series[] }[] {
  const byName = new Map<string, Map<string, [number, number | null][]>>();
  for (const p of history) {
    if (p.epoch === null || p.epoch === undefined) continue;
    const stages = byName.get(p.name) ?? new Map<string, [number, number | null][]>();
    const points = stages.get(p.stage) ?? [];
    points.push([p.epoch + 1, p.value ?? null]);
    stages.set(p.stage, points);
    byName.set(p.name, stages);
  }
  const order = (n: string) => (n.startsWith("train.") ? 0 : 1);
  return [...byName.entries()]
    .sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b))
    .map(([name, stages]) => ({
      name,
      series: [...stages.entries()].map(([stage, points]) => ({ label: stage, points })),
    }));
}

const METRIC_TITLES: Record<string, string> = {
  ca: "Clean accuracy (CA)",
  asr: "Attack success rate (ASR)",
  mse: "Reconstruction MSE",
};

export function Job({ id }: { id: string }) {
  useTitle(`Job ${id.slice(0, 8)}`);
  const api = useApi();
  const job = useQuery<{ job: JobDetail | null }>(JOB, { id });
  const cancel = useMutation<{ cancelJob: { status: string } }>(CANCEL);
  const retry = useMutation<{ retryJob: { status: string } }>(RETRY);
  const [now, setNow] = useState(Date.now());
  const seen = useRef("");

  // The ETA's clock ticks only while the job runs: the view (its charts included) re-renders on each tick.
  const running = job.data?.job?.status === "RUNNING";
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);

  useEffect(
    () =>
      api.subscribe<{ jobUpdated: JobRow }>(
        UPDATED,
        { id },
        ({ jobUpdated }) => {
          job.set((data) => (data?.job ? { job: { ...data.job, ...jobUpdated } } : data));
          // Curves, transitions, logs and artifacts change with the epoch and the status: read them again then.
          const step = `${jobUpdated.status}/${jobUpdated.progress?.stage}/${jobUpdated.progress?.epoch}`;
          if (step !== seen.current) {
            seen.current = step;
            job.reload();
          }
        },
        () => {},
      ),
    [api, id],
  );

  const j = job.data?.job;
  if (job.data && !j) return <p role="alert">No job {id} (it may have been deleted).</p>;
  if (!j) return <ErrorMessage error={job.error} retry={job.reload} />;
  const left = eta(j, now);
  const previews = j.artifacts.filter((a) => a.kind === "preview" && a.format === "png");
  return (
    <section aria-labelledby="job-title">
      <div class="view-head">
        <h1 id="job-title">
          Job <span class="mono">{j.id}</span>
        </h1>
        <Status value={j.status} />
        {!TERMINAL.has(j.status) ? (
          <button type="button" disabled={cancel.busy} onClick={() => cancel.run({ id })}>
            Cancel job
          </button>
        ) : null}
        {j.status === "FAILED" || j.status === "CANCELLED" ? (
          <button type="button" disabled={retry.busy} onClick={() => retry.run({ id }).then(job.reload)}>
            Retry job
          </button>
        ) : null}
      </div>
      <ErrorMessage error={job.error ?? cancel.error ?? retry.error} retry={job.reload} />
      <dl class="facts">
        <dt>Method</dt>
        <dd>{j.method}</dd>
        <dt>Architecture</dt>
        <dd>{j.architecture}</dd>
        <dt>Created</dt>
        <dd>{when(j.createdAt)}</dd>
        <dt>Attempt</dt>
        <dd>{j.attempt}</dd>
        <dt>ASR</dt>
        <dd>{percent(j.metrics?.asr)}</dd>
        <dt>CA</dt>
        <dd>{percent(j.metrics?.ca)}</dd>
        <dt>MSE</dt>
        <dd>{decimal(j.metrics?.mse)}</dd>
      </dl>
      <h2>Progress</h2>
      {j.progress ? (
        <div class="job-progress">
          <ProgressBar fraction={j.status === "SUCCEEDED" ? 1 : j.progress.fraction} label="job progress" />
          <p>
            {j.progress.stage ? `Stage ${j.progress.stage}` : ""}
            {typeof j.progress.epoch === "number" && j.progress.epochs
              ? `, epoch ${j.progress.epoch + 1} of ${j.progress.epochs}`
              : ""}
            {left !== null ? ` · about ${duration(left)} left` : ""}
          </p>
        </div>
      ) : (
        <p>
          {j.waitingReason ?? (j.status === "QUEUED" ? "Waiting for a worker." : "No progress reported.")}
        </p>
      )}
      {j.error ? (
        <p class="error" role="alert">
          <strong>{j.error.code}</strong>: {j.error.message}
        </p>
      ) : null}
      <h2>Curves</h2>
      {j.history.length === 0 ? <p>No epochs finished yet.</p> : null}
      <div class="charts">
        {curves(j.history).map((c) => (
          <LineChart key={c.name} title={METRIC_TITLES[c.name] ?? c.name} xLabel="epoch" series={c.series} />
        ))}
      </div>
      {previews.length > 0 ? (
        <>
          <h2>Reconstructions</h2>
          <p>
            Originals above what the trapped stem reconstructs; triggered images last, where the trigger
            should fade.
          </p>
          {previews.map((p) => (
            <img
              key={p.downloadUrl}
              class="preview"
              src={p.downloadUrl}
              alt="Test images above their reconstructions"
            />
          ))}
        </>
      ) : null}
      {j.health ? <HealthReport health={j.health} /> : null}
      <h2>Artifacts</h2>
      {j.artifacts.length === 0 ? <p>None{TERMINAL.has(j.status) ? "" : " yet"}.</p> : null}
      <ul class="artifacts">
        {j.artifacts.map((a) => (
          <li key={`${a.kind}.${a.format}`}>
            <a href={a.downloadUrl} download>
              Download {a.kind} ({a.format}, {bytes(a.sizeBytes)})
            </a>
          </li>
        ))}
      </ul>
      <h2>Transitions</h2>
      <ol class="transitions">
        {j.transitions.map((t) => (
          <li key={t.at + t.to}>
            {when(t.at)}: {t.from ?? "—"} → <Status value={t.to} />
            {t.reason ? ` (${t.reason})` : ""}
          </li>
        ))}
      </ol>
      <h2>Log</h2>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling log must be reachable by keyboard (axe: scrollable-region-focusable) */}
      <pre class="log" role="log" tabIndex={0} aria-label="last lines of the job's log">
        {j.logTail.join("\n") || "(empty)"}
      </pre>
      <p>
        <a href={href.jobs()}>Back to jobs</a>
      </p>
    </section>
  );
}

/** The parts of Health.calibration the page shows. */
interface Calibration {
  dataset: string;
  source: string;
  outOfSample: Record<"falsePositiveRate" | "falseNegativeRate" | "likelyTargetAccuracy", Share>;
  outOfSampleAtLeast5Percent: { falseNegativeRate: Share };
}
type Share = Pick<CalibrationRate, "count" | "of">;

const share = (rate: Share) => `${rate.count} of ${rate.of}`;

/** How far the verdict can be trusted: its thresholds' error rates on runs they were not chosen on. */
function CalibrationNote({ calibration }: { calibration: Calibration }) {
  const out = calibration.outOfSample;
  return (
    <p class="calibration">
      {`How far the verdict can be trusted (${calibration.dataset}, runs its thresholds were not chosen on): `}
      {`clean sets called poisoned ${share(out.falsePositiveRate)}; `}
      {`poisoned sets not called poisoned ${share(out.falseNegativeRate)} `}
      {`(${share(calibration.outOfSampleAtLeast5Percent.falseNegativeRate)} with poison at 5 % of the set or more); `}
      {`likely target right ${share(out.likelyTargetAccuracy)}. Source: ${calibration.source}.`}
    </p>
  );
}

function HealthReport({ health }: { health: NonNullable<JobDetail["health"]> }) {
  const evidence = health.evidence as {
    overPrediction?: number[];
    flaggedShare?: number[];
    flaggedCount?: number;
  };
  const classes = (evidence.overPrediction ?? []).map((_, i) => String(i));
  return (
    <section aria-labelledby="health-title" class="health">
      <h2 id="health-title">Health report</h2>
      <p>
        Verdict: <Status value={health.verdict} />
        {health.likelyTarget !== null ? ` · likely target class ${health.likelyTarget}` : ""}
        {` · ${evidence.flaggedCount ?? 0} of ${health.sampleCount} training samples flagged`}
      </p>
      {health.calibration ? <CalibrationNote calibration={health.calibration} /> : null}
      <div class="charts">
        {evidence.overPrediction ? (
          <BarChart
            title="Over-prediction per class (trapped head's share ÷ holdout's share)"
            labels={classes}
            values={evidence.overPrediction}
            valueLabel="over-prediction"
          />
        ) : null}
        {evidence.flaggedShare ? (
          <BarChart
            title="Share of each class's samples flagged"
            labels={classes}
            values={evidence.flaggedShare}
            valueLabel="flagged share"
          />
        ) : null}
      </div>
      <h3>Most suspicious training images</h3>
      <ul class="thumbs">
        {health.suspicious.edges.map(({ node: s }) => (
          <li key={s.index}>
            {s.thumbnailUrl ? (
              <img
                src={s.thumbnailUrl}
                alt={`training sample ${s.index}, label ${s.label}`}
                width={64}
                height={64}
              />
            ) : null}
            <span>
              #{s.rank} · image {s.index} · label {s.label} · score {s.score.toFixed(3)}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
