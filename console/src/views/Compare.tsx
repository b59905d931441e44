/** Compare: the tenant's studies, and one study's table with each method's mean ASR and CA as charts. */
import { useEffect } from "preact/hooks";
import { BarChart } from "../components/Chart.tsx";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { Status } from "../components/Status.tsx";
import { bytes, decimal, duration, percent, shortId, when } from "../format.ts";
import { useQuery, useTitle } from "../hooks.ts";
import { href } from "../router.ts";
import type { Artifact, StudyRow, Study as StudyType } from "../schema.ts";

type StudySummary = Pick<StudyType, "id" | "status" | "spec" | "createdAt">;
const STUDIES = `query Studies { studies(first: 50) { edges { node { id status spec createdAt } } } }`;
const STUDY = `query Study($id: ID!) { study(id: $id) { id status spec createdAt
  table { method seed status asr ca mse runtimeSeconds healthVerdict job { id } }
  report { sizeBytes downloadUrl } } }`;

type Row = Omit<StudyRow, "job"> & { job: { id: string } };
type StudyDetail = StudySummary & {
  table: Row[];
  report: Pick<Artifact, "sizeBytes" | "downloadUrl"> | null;
};

const methodsOf = (spec: unknown): string =>
  ((spec as { methods?: { method: string }[] }).methods ?? []).map((m) => m.method).join(", ");

export function Compare() {
  useTitle("Compare");
  const studies = useQuery<{ studies: { edges: { node: StudySummary }[] } }>(STUDIES);
  const edges = studies.data?.studies.edges ?? [];
  return (
    <section aria-labelledby="compare-title">
      <h1 id="compare-title">Comparison studies</h1>
      <p class="dim">
        A study runs several methods over seeds on the same data (launchStudy); open one to compare them.
      </p>
      <ErrorMessage error={studies.error} retry={studies.reload} />
      <table class="data">
        <caption class="visually-hidden">Studies, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Study</th>
            <th scope="col">Methods</th>
            <th scope="col">Status</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {edges.map(({ node: s }) => (
            <tr key={s.id}>
              <td>
                <a class="mono" href={href.study(s.id)}>
                  {shortId(s.id)}
                </a>
              </td>
              <td>{methodsOf(s.spec)}</td>
              <td>
                <Status value={s.status} />
              </td>
              <td>{when(s.createdAt)}</td>
            </tr>
          ))}
          {edges.length === 0 && !studies.loading ? (
            <tr>
              <td colSpan={4}>No studies yet.</td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </section>
  );
}

/** Each method's mean of `pick` over its rows that measured it. */
function means(rows: Row[], pick: (r: Row) => number | null | undefined): [string, number][] {
  const sums = new Map<string, [number, number]>();
  for (const r of rows) {
    const v = pick(r);
    if (v === null || v === undefined) continue;
    const [s, n] = sums.get(r.method) ?? [0, 0];
    sums.set(r.method, [s + v, n + 1]);
  }
  return [...sums.entries()].map(([m, [s, n]]) => [m, (100 * s) / n]);
}

export function Study({ id }: { id: string }) {
  useTitle(`Study ${shortId(id)}`);
  const study = useQuery<{ study: StudyDetail | null }>(STUDY, { id });
  const s = study.data?.study;
  useEffect(() => {
    if (s?.status !== "RUNNING") return;
    const timer = setTimeout(study.reload, 3000);
    return () => clearTimeout(timer);
  }, [s?.status, study.data]);
  if (study.data && !s) return <p role="alert">No study {id}.</p>;
  if (!s) return <ErrorMessage error={study.error} retry={study.reload} />;
  const asr = means(s.table, (r) => r.asr);
  const ca = means(s.table, (r) => r.ca);
  return (
    <section aria-labelledby="study-title">
      <div class="view-head">
        <h1 id="study-title">
          Study <span class="mono">{s.id}</span>
        </h1>
        <Status value={s.status} />
      </div>
      <ErrorMessage error={study.error} retry={study.reload} />
      <table class="data">
        <caption>Each job of the study</caption>
        <thead>
          <tr>
            <th scope="col">Method</th>
            <th scope="col">Seed</th>
            <th scope="col">Status</th>
            <th scope="col">ASR</th>
            <th scope="col">CA</th>
            <th scope="col">MSE</th>
            <th scope="col">Run time</th>
            <th scope="col">Health</th>
            <th scope="col">Job</th>
          </tr>
        </thead>
        <tbody>
          {s.table.map((r) => (
            <tr key={r.job.id}>
              <td>{r.method}</td>
              <td class="num">{r.seed}</td>
              <td>
                <Status value={r.status} />
              </td>
              <td class="num">{percent(r.asr)}</td>
              <td class="num">{percent(r.ca)}</td>
              <td class="num">{decimal(r.mse)}</td>
              <td class="num">{duration(r.runtimeSeconds)}</td>
              <td>{r.healthVerdict ?? "—"}</td>
              <td>
                <a class="mono" href={href.job(r.job.id)}>
                  {shortId(r.job.id)}
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="charts">
        {asr.length ? (
          <BarChart
            title="Mean ASR per method (%)"
            labels={asr.map(([m]) => m)}
            values={asr.map(([, v]) => v)}
            valueLabel="ASR %"
          />
        ) : null}
        {ca.length ? (
          <BarChart
            title="Mean CA per method (%)"
            labels={ca.map(([m]) => m)}
            values={ca.map(([, v]) => v)}
            valueLabel="CA %"
          />
        ) : null}
      </div>
      {s.report ? (
        <p>
          <a href={s.report.downloadUrl} download>
            Download the study report (tar, {bytes(s.report.sizeBytes)})
          </a>
        </p>
      ) : (
        <p class="dim">The report is written when every job has ended.</p>
      )}
      <p>
        <a href={href.compare()}>Back to studies</a>
      </p>
    </section>
  );
}
