/**
 * A job on several processes as the worker starts it (src/trainer/run.ts): torchrun with two
 * CPU processes on gloo. torchrun exits 1 whenever a rank fails, so the outcome's exit code must
 * be the one rank 0 stated: 0 done, 3 stopped after a checkpoint.
 */

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type RunSpec, type TrainerEvent, TrainerExit } from "../../src/trainer/protocol.ts";
import { startTrainerRun, trainerArgs } from "../../src/trainer/run.ts";
import { makeDatasets, python } from "../helpers/app.ts";

describe("a job on two processes (torchrun + DistributedDataParallel, gloo)", () => {
  const root = mkdtempSync(join(tmpdir(), "trapdoor-ddp-"));
  const data = makeDatasets(join(root, "data"), { nTrain: 600, nHoldout: 80, nTest: 80 });
  const spec = (epochs: number): RunSpec => ({
    jobId: "ddp-test",
    method: "NO_DEFENSE",
    architecture: "small-cnn",
    data: {
      train: data.train as string,
      holdout: data.holdout as string,
      test: data.test as string,
      asrTest: data.asr ?? null,
    },
    target: 0,
    hyperparameters: { epochs, batchSize: 64, evalEvery: 0 },
    seed: 3,
    device: "cpu",
    processes: 2,
  });

  it("one process runs the trainer itself; more run it under torchrun", () => {
    assert.deepEqual(trainerArgs({ ...spec(1), processes: 1 }, "s.json", "w").slice(0, 2), [
      "-m",
      "trapdoor_trainer",
    ]);
    assert.deepEqual(trainerArgs(spec(1), "s.json", "w").slice(0, 4), [
      "-m",
      "trapdoor_trainer.torchrun",
      "--standalone",
      "--nproc_per_node=2",
    ]);
  });

  it("finishes with rank 0's result, and a stop ends with the checkpoint's exit code", async () => {
    const dir = join(root, "done");
    mkdirSync(dir);
    const events: TrainerEvent[] = [];
    const run = await startTrainerRun(spec(2), {
      dir,
      python,
      onEvent: (e) => events.push(e),
      onUnparsed: () => {},
    });
    const outcome = await run.done;
    assert.equal(outcome.code, TrainerExit.ok, outcome.stderr);
    assert.equal(outcome.result?.device.processes, 2);
    assert.ok(
      events.every((e) => e.type !== "exit"),
      "the exit event is the runner's, not the job's",
    );

    const stopDir = join(root, "stopped");
    mkdirSync(stopDir);
    let stopping = false;
    const stopped = await startTrainerRun(spec(20), {
      dir: stopDir,
      python,
      onEvent: (e) => {
        if (e.type === "progress" && e.epoch >= 1 && !stopping) {
          stopping = true;
          stopped.stop();
        }
      },
      onUnparsed: () => {},
    });
    const ended = await stopped.done;
    assert.equal(ended.code, TrainerExit.cancelled, ended.stderr);
    assert.match(ended.stderr.trim().split("\n").at(-1) ?? "", /"cancelled": ?true/);
  });
});
