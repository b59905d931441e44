import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startWorker } from "../../src/worker/index.ts";
import { datasetIds, gql, makeDatasets, startTestApp, uploadJobDatasets, waitFor } from "../helpers/app.ts";

/** The value of one sample line (`name{labels} value`) in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("/metrics for Prometheus", () => {
  it("the API reports request latency, jobs by state and queue depth; a worker its jobs and throughput", async () => {
    const app = await startTestApp({ TRAPDOOR_WORKER_QUEUES: "ingest", TRAPDOOR_AUTOSCALED_QUEUES: "cpu" });
    try {
      const url = app.url as string;
      const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-metrics-")), {
        nTrain: 200,
        nHoldout: 40,
        nTest: 40,
      });
      const launched = await gql<{ launchTraining: { id: string } }>(
        url,
        app.key,
        `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id } }`,
        {
          input: {
            method: "NO_DEFENSE",
            architecture: "small-cnn",
            ...datasetIds(await uploadJobDatasets(url, app.key, data)),
            hyperparameters: { epochs: 1, batchSize: 32 },
            idempotencyKey: "metrics",
          },
        },
      );
      const id = launched.data?.launchTraining.id;
      assert.ok(id, JSON.stringify(launched.errors));

      const before = await (await fetch(`${url}/metrics`)).text();
      assert.equal(sample(before, 'trapdoor_jobs{status="QUEUED",queue="cpu"}'), 1);
      assert.equal(sample(before, 'trapdoor_queue_depth{queue="cpu"}'), 1);
      assert.equal(sample(before, 'trapdoor_queue_depth{queue="ingest"}'), 0);
      const posts = sample(
        before,
        'trapdoor_http_request_duration_seconds_count{method="POST",route="/graphql",status="200"}',
      );
      assert.ok((posts ?? 0) >= 4, `graphql POSTs counted: ${posts}`);

      const worker = await startWorker(
        { ...app.config, worker: { ...app.config.worker, queues: ["cpu"], metricsPort: 0 } },
        {
          execution: app.execution,
          datasets: app.datasetProcessor,
          models: app.models,
          workers: app.workers,
        },
        app.queue,
        "measured",
      );
      try {
        await waitFor("the job to succeed", async () => {
          const rows = await app.db.query("SELECT status FROM training_jobs WHERE id = $1", [id]);
          return rows[0].status === "SUCCEEDED";
        });
        const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
        assert.equal(sample(text, "trapdoor_worker_jobs_started_total"), 1);
        await waitFor("the finished count", async () => {
          const t = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
          return sample(t, "trapdoor_worker_jobs_finished_total") === 1;
        });
        assert.ok(
          (sample(text, 'trapdoor_trainer_images_per_second{stage="train"}') ?? 0) > 0,
          text.slice(0, 400),
        );
        const after = await (await fetch(`${url}/metrics`)).text();
        assert.equal(sample(after, 'trapdoor_jobs{status="SUCCEEDED",queue="cpu"}'), 1);
        assert.equal(sample(after, 'trapdoor_queue_depth{queue="cpu"}'), 0);
      } finally {
        await worker.stop();
      }
    } finally {
      await app.cleanup();
    }
  });
});
