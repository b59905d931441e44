import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Catalog } from "../../src/trainer/catalog.ts";
import {
  type ArtifactEvent,
  ProtocolError,
  parseTrainerEvent,
  type ResultEvent,
  type RunSpec,
  TrainerExit,
  type TrainerSpecError,
} from "../../src/trainer/protocol.ts";

const trainerRoot = fileURLToPath(new URL("../../trainer", import.meta.url));
const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";

function trainer(args: string[]) {
  return spawnSync(python, ["-m", "trapdoor_trainer", ...args], {
    cwd: trainerRoot,
    encoding: "utf8",
    timeout: 120_000,
  });
}

function makeDatasets(root: string): Record<string, string> {
  const script = `import sys, json; sys.path.insert(0, 'tests'); from synthetic import write_job_datasets; from pathlib import Path; print(json.dumps(write_job_datasets(Path(sys.argv[1]), n_train=400, n_holdout=80, n_test=80)))`;
  const out = spawnSync(python, ["-c", script, root], { cwd: trainerRoot, encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout);
}

describe("trainer protocol (TypeScript types against the real trainer)", () => {
  const root = mkdtempSync(join(tmpdir(), "trapdoor-protocol-"));
  const data = makeDatasets(root);

  it("every event of a real T&R run parses, and the result carries the metrics", () => {
    const spec: RunSpec = {
      jobId: "protocol-test",
      method: "TRAP_AND_REPLACE",
      architecture: "small-cnn",
      data: {
        train: data.train as string,
        holdout: data.holdout as string,
        test: data.test as string,
        asrTest: data.asr ?? null,
      },
      target: 0,
      hyperparameters: { stage1Epochs: 1, stage2Epochs: 1, batchSize: 64, previewCount: 2 },
      seed: 0,
      device: "cpu",
    };
    writeFileSync(join(root, "spec.json"), JSON.stringify(spec));
    const run = trainer(["run", "--spec", join(root, "spec.json"), "--workdir", join(root, "work")]);
    assert.equal(run.status, TrainerExit.ok, run.stderr);
    const events = run.stdout.trim().split("\n").map(parseTrainerEvent);
    const types = new Set(events.map((e) => e.type));
    for (const t of ["log", "progress", "metric", "checkpoint", "artifact", "result"])
      assert.ok(types.has(t as never), t);
    const result = events.at(-1) as ResultEvent;
    assert.equal(result.type, "result");
    assert.equal(result.method, "TRAP_AND_REPLACE");
    for (const value of [result.asr, result.ca, result.mse, result.stage1Asr]) {
      assert.ok(typeof value === "number" && value >= 0 && value <= 1);
    }
    const kinds = events.filter((e): e is ArtifactEvent => e.type === "artifact").map((e) => e.kind);
    assert.deepEqual(
      new Set(kinds),
      new Set(["model", "config", "metadata", "onnx", "preview", "health", "bundle"]),
    );
  });

  it("a bad spec exits 2 with the field named, as TrainerSpecError", () => {
    const bad = {
      method: "TRAP_AND_REPLACE",
      data: { train: data.train, holdout: data.holdout, test: data.test },
      hyperparameters: { lambda9: 1 },
    };
    writeFileSync(join(root, "bad.json"), JSON.stringify(bad));
    const run = trainer(["run", "--spec", join(root, "bad.json"), "--workdir", join(root, "bad")]);
    assert.equal(run.status, TrainerExit.invalid);
    const error = JSON.parse(run.stderr.trim().split("\n").at(-1) ?? "") as TrainerSpecError;
    assert.equal(error.error, "invalid_spec");
    assert.equal(error.field, "hyperparameters.lambda9");
  });

  it("the catalog the API serves is exactly what the trainer describes (run `make catalog` after a change)", () => {
    const run = trainer(["describe"]);
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(Catalog.load().data, JSON.parse(run.stdout));
    const described = JSON.parse(run.stdout) as { architectures: string[] };
    assert.deepEqual(described.architectures.sort(), ["resnet18", "resnet34", "small-cnn", "wrn16-1"]);
  });

  it("rejects lines that are off-contract", () => {
    assert.throws(() => parseTrainerEvent("not json"), ProtocolError);
    assert.throws(() => parseTrainerEvent('{"type":"telemetry","time":1}'), ProtocolError);
    assert.throws(
      () => parseTrainerEvent('{"type":"metric","time":1,"name":"ca","value":"high","stage":"x"}'),
      ProtocolError,
    );
  });
});
