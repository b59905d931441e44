import assert from "node:assert/strict";
import childProcess from "node:child_process";
import { mkdtempSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gql, makeDatasets, startReplica, startTestApp, uploadJobDatasets } from "../helpers/app.ts";

const SPAWNERS = ["spawn", "spawnSync", "exec", "execSync", "execFile", "execFileSync", "fork"] as const;

/**
 * Makes every child_process function (named ESM imports included) record its call and throw,
 * whatever the program it is asked to run, an absolute path like /usr/bin/python3 included.
 */
function forbidSpawning() {
  const calls: string[] = [];
  const cp = childProcess as unknown as Record<string, unknown>;
  const saved = Object.fromEntries(SPAWNERS.map((name) => [name, cp[name]]));
  for (const name of SPAWNERS) {
    cp[name] = (...args: unknown[]) => {
      calls.push(`${name} ${JSON.stringify(args[0])}`);
      throw new Error(`the API process tried to ${name} ${String(args[0])}`);
    };
  }
  syncBuiltinESMExports();
  return {
    calls,
    restore() {
      Object.assign(cp, saved);
      syncBuiltinESMExports();
    },
  };
}

const CREATE = `mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id } } }`;

describe("the API process runs no Python and no other process", () => {
  it("serves methods, attacks, uploads, poisoning and launches without spawning anything", async () => {
    const app = await startTestApp({ TRAPDOOR_AUTOSCALED_QUEUES: "cpu" }, { api: true, worker: false });
    try {
      // Ingest is a worker's job: one runs beside the API until the datasets are READY.
      const ingester = await startReplica(
        app,
        { api: false, worker: true },
        { TRAPDOOR_WORKER_QUEUES: "ingest" },
      );
      const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-nospawn-")), {
        nTrain: 200,
        nHoldout: 40,
        nTest: 40,
      });
      const url = app.url as string;
      const ids = await uploadJobDatasets(url, app.key, data);
      await ingester.stop();

      const spawning = forbidSpawning();
      try {
        const catalog = await gql<{ methods: { name: string }[]; attacks: { name: string }[] }>(
          url,
          app.key,
          "{ methods { name hyperparameters { name type } } attacks { name } }",
        );
        assert.ok((catalog.data?.methods.length ?? 0) >= 8, JSON.stringify(catalog.errors));
        assert.ok((catalog.data?.attacks.length ?? 0) >= 10);

        const created = await gql<{ createDatasetUpload: { dataset: { id: string } } }>(
          url,
          app.key,
          CREATE,
          {
            input: { name: "more", role: "TRAIN", format: "NPZ", sizeBytes: 10, sha256: "0".repeat(64) },
          },
        );
        assert.ok(created.data?.createDatasetUpload.dataset.id, JSON.stringify(created.errors));

        const poisoned = await gql<{ poisonDataset: { dataset: { status: string } } }>(
          url,
          app.key,
          `mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { status } } }`,
          {
            input: {
              sourceId: ids.train,
              testDatasetId: ids.test,
              attack: { name: "blend", target: 0, ratio: 0.1, params: { alpha: 0.3 } },
            },
          },
        );
        assert.equal(
          poisoned.data?.poisonDataset.dataset.status,
          "VALIDATING",
          JSON.stringify(poisoned.errors),
        );

        const launched = await gql<{ launchTraining: { status: string } }>(
          url,
          app.key,
          `mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { status } }`,
          {
            input: {
              method: "TRAP_AND_REPLACE",
              trainDatasetId: ids.train,
              holdoutDatasetId: ids.holdout,
              testDatasetId: ids.test,
              hyperparameters: { stage1Epochs: 1 },
              idempotencyKey: "no-spawn",
            },
          },
        );
        assert.equal(launched.data?.launchTraining.status, "QUEUED", JSON.stringify(launched.errors));
        assert.deepEqual(spawning.calls, []);
        // The guard itself works for code that imported child_process by name.
        const { spawnSync } = await import("node:child_process");
        assert.throws(() => spawnSync("/usr/bin/python3", ["-c", "1"]), /tried to spawnSync/);
        assert.equal(spawning.calls.length, 1);
      } finally {
        spawning.restore();
      }
    } finally {
      await app.cleanup();
    }
  });
});
