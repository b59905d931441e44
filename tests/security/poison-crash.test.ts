/**
 * Abuse case 2: a worker killed with SIGKILL while `poisonDataset` runs used to leave the new
 * datasets VALIDATING forever. Poisoning now runs on the queue with a lease: the next worker takes
 * the run over, and no dataset or object is left behind.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { startWorker } from "../../src/worker/index.ts";
import { gql, makeDatasets, startTestApp, uploadNpyPair, waitFor } from "../helpers/app.ts";
import { assertInvariants } from "../helpers/invariants.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

describe("abuse: a worker killed mid-poisoning (case 2)", () => {
  it("leaves both new datasets to the next worker, which makes them READY; nothing is orphaned", async () => {
    const app = await startTestApp({}, { api: true, worker: false });
    try {
      const url = app.url as string;
      const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-poison-crash-")), {
        nTrain: 4000,
        nHoldout: 20,
        nTest: 400,
      });
      const ingester = await startWorker(
        { ...app.config, worker: { ...app.config.worker, queues: ["ingest"] } },
        {
          execution: app.execution,
          datasets: app.datasetProcessor,
          models: app.models,
          workers: app.workers,
        },
        app.queue,
        "ingester",
      );
      const sourceId = await uploadNpyPair(url, app.key, data.train, "TRAIN");
      const testId = await uploadNpyPair(url, app.key, data.test, "TEST");
      await ingester.stop();
      // The victim: its own process group, so SIGKILL takes its trainer process too.
      const victim = spawn(process.execPath, ["bin/trapdoor.js", "worker", "--data-dir", app.dir], {
        cwd: repo,
        env: {
          ...process.env,
          DATABASE_URL: app.databaseUrl,
          TRAPDOOR_PUBLIC_URL: app.config.publicBaseUrl,
          TRAPDOOR_WORKER_QUEUES: "poison",
          TRAPDOOR_POLL_SECONDS: "1",
          TRAPDOOR_HEARTBEAT_SECONDS: "1",
          TRAPDOOR_STALE_AFTER_SECONDS: "5",
        },
        detached: true,
        stdio: "ignore",
      });
      const res = await gql<{ poisonDataset: { dataset: { id: string }; asrTestDataset: { id: string } } }>(
        url,
        app.key,
        `mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { id } asrTestDataset { id } } }`,
        {
          input: { sourceId, testDatasetId: testId, attack: { name: "badnet_grid", target: 0, ratio: 0.1 } },
        },
      );
      const poisoned = res.data?.poisonDataset;
      assert.ok(poisoned, JSON.stringify(res.errors));
      await waitFor(
        "the victim to claim the poisoning run",
        async () =>
          (
            await app.db.query("SELECT processing_attempt FROM datasets WHERE id = $1", [poisoned.dataset.id])
          )[0].processing_attempt === 1,
        60_000,
        20,
      );
      process.kill(-(victim.pid as number), "SIGKILL");
      const rescuer = await startWorker(
        { ...app.config, worker: { ...app.config.worker, queues: ["poison"] } },
        {
          execution: app.execution,
          datasets: app.datasetProcessor,
          models: app.models,
          workers: app.workers,
        },
        app.queue,
        "rescuer",
      );
      try {
        const rows = await waitFor(
          "both poisoned datasets to settle",
          async () => {
            const r = await app.db.query(
              "SELECT id, status, failure_reason, processing_attempt FROM datasets WHERE id = ANY($1::uuid[])",
              [[poisoned.dataset.id, poisoned.asrTestDataset.id]],
            );
            return r.every((d: { status: string }) => d.status === "READY" || d.status === "FAILED")
              ? r
              : null;
          },
          120_000,
        );
        for (const row of rows) assert.equal(row.status, "READY", row.failure_reason);
        const train = rows.find((r: { id: string }) => r.id === poisoned.dataset.id);
        assert.equal(train.processing_attempt, 2, "the rescuer ran the second attempt");
        // The killed attempt's scratch directory goes at the next sweep (every 10 minutes) once it
        // has been left untouched a while (a fresh directory is never swept): age it, then sweep.
        const scratch = join(app.dir, "scratch");
        for (const name of readdirSync(scratch)) utimesSync(join(scratch, name), new Date(0), new Date(0));
        await app.sweeper.sweep();
        await assertInvariants(app);
      } finally {
        await rescuer.stop();
      }
    } finally {
      await app.cleanup();
    }
  });
});
