/** Operations: each queue's waiting work and live workers, and the tenant's usage against its quota. */
import { useEffect } from "preact/hooks";
import { ErrorMessage } from "../components/ErrorMessage.tsx";
import { bytes } from "../format.ts";
import { useQuery, useTitle } from "../hooks.ts";
import type { Operations as OperationsType } from "../schema.ts";

const OPERATIONS = `query Operations { operations { queues { name waiting mine liveWorkers autoscaled }
  usage { bytes datasets liveJobs } quota { bytes datasets liveJobs } } }`;
const REFRESH_MS = 5000;

export function Operations() {
  useTitle("Operations");
  const ops = useQuery<{ operations: OperationsType }>(OPERATIONS);
  useEffect(() => {
    const timer = setInterval(ops.reload, REFRESH_MS);
    return () => clearInterval(timer);
  }, [ops.reload]);
  const o = ops.data?.operations;
  const usage: [string, number, number, (n: number) => string][] = o
    ? [
        ["Stored bytes", o.usage.bytes, o.quota.bytes, bytes],
        ["Datasets", o.usage.datasets, o.quota.datasets, String],
        ["Live jobs", o.usage.liveJobs, o.quota.liveJobs, String],
      ]
    : [];
  return (
    <section aria-labelledby="ops-title">
      <h1 id="ops-title">Operations</h1>
      <ErrorMessage error={ops.error} retry={ops.reload} />
      <h2>Queues</h2>
      <table class="data">
        <caption class="visually-hidden">Work queues</caption>
        <thead>
          <tr>
            <th scope="col">Queue</th>
            <th scope="col">Waiting (all tenants)</th>
            <th scope="col">Yours</th>
            <th scope="col">Live workers</th>
            <th scope="col">Autoscaled</th>
          </tr>
        </thead>
        <tbody>
          {o?.queues.map((q) => (
            <tr key={q.name} data-queue={q.name}>
              <td class="mono">{q.name}</td>
              <td class="num">{q.waiting}</td>
              <td class="num">{q.mine}</td>
              <td class="num">{q.liveWorkers}</td>
              <td>{q.autoscaled ? "yes" : "no"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Your usage</h2>
      <dl class="usage">
        {usage.map(([label, used, quota, show]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>
              <meter min={0} max={quota} value={used} aria-label={`${label} used of quota`} />
              {show(used)} of {show(quota)}
            </dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
