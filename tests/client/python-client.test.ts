/**
 * The Python client (clients/python/trapdoor_client.py, standard library only) against a live
 * service: the README's example exactly as written, and the client's errors.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { makeDatasets, python, startTestApp } from "../helpers/app.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** The ```python block between the README's `<name>:start` and `<name>:end` markers. */
function readmeExample(name = "python-client-example"): string {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const block = new RegExp(
    `<!-- ${name}:start -->\\s*\`\`\`python\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`,
  ).exec(readme);
  assert.ok(block, `the README has the Python example ${name}`);
  return block[1] as string;
}

describe("the Python client against a live service", () => {
  let app: Awaited<ReturnType<typeof startTestApp>>;
  let data: Record<string, string>;

  before(async () => {
    app = await startTestApp();
    data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-pyclient-")), {
      nTrain: 200,
      nHoldout: 40,
      nTest: 40,
    });
  });

  after(async () => {
    await app?.cleanup();
  });

  /** Runs a script (asynchronously: the service answering it lives in this process). */
  const runPython = (code: string, env: Record<string, string> = {}) => {
    const file = join(mkdtempSync(join(tmpdir(), "trapdoor-pyclient-run-")), "run.py");
    writeFileSync(file, code);
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        python,
        [file],
        {
          cwd: repo,
          encoding: "utf8",
          timeout: 240_000,
          env: { ...process.env, TRAPDOOR_ENDPOINT: app.url as string, TRAPDOOR_KEY: app.key, ...env },
        },
        (error, stdout, stderr) =>
          resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  };

  it("runs the README example: upload, launch with labels, wait, download, find", async () => {
    const run = await runPython(readmeExample(), { DATA_DIR: dirname(data.train as string) });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim().split("\n").at(-1) as string);
    assert.equal(out.status, "SUCCEEDED");
    assert.ok(out.ca >= 0 && out.ca <= 1);
    const onnx = readFileSync(out.model);
    assert.ok(onnx.length > 1000);
    assert.equal(out.found.length, 1);
    const digest = createHash("sha256").update(onnx).digest("hex");
    const check = await runPython(
      `import sys; sys.path.insert(0, "clients/python"); import os
from trapdoor_client import Trapdoor
td = Trapdoor(os.environ["TRAPDOOR_ENDPOINT"], os.environ["TRAPDOOR_KEY"])
job = td.job(${JSON.stringify(out.found[0])})
print([a["sha256"] for a in job["artifacts"] if a["format"] == "onnx"][0])`,
    );
    assert.equal(check.stdout.trim(), digest, check.stderr);
  });

  it("runs the README's scan walkthrough: scan, read the report, sanitize, train, download", async () => {
    // A quarter of the training set poisoned towards class 0 (trainer/tests/synthetic.py).
    const poisoned = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-pyscan-")), {
      nTrain: 1000,
      nHoldout: 200,
      nTest: 100,
      ratio: 0.25,
      seed: 6,
    });
    const dataDir = dirname(poisoned.train as string);
    const run = await runPython(readmeExample("python-scan-example"), { DATA_DIR: dataDir });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim().split("\n").at(-1) as string);
    assert.deepEqual([out.verdict, out.target, out.kept, out.trained], ["POISONED", 0, 750, "SUCCEEDED"]);
    const mask = readFileSync(join(poisoned.train as string, "poison_mask.npy"));
    const flags = mask.subarray(10 + mask.readUInt16LE(8));
    assert.ok(
      out.top.every((i: number) => flags[i] === 1),
      "the five most suspicious samples are poisoned",
    );
    const npz = readFileSync(join(dataDir, "sanitized.npz"));
    assert.equal(npz.readUInt32LE(0), 0x04034b50); // a zip: np.load reads it (tests/api/health-scan.test.ts)
  });

  it("runs the README's bring-your-own-model walkthrough: upload, evaluate, ANP, download", async () => {
    const dataDir = dirname(data.train as string);
    // A model "trained elsewhere": a no-defense job's weights, saved as the user would have them.
    const elsewhere = await runPython(
      `import os, sys
sys.path.insert(0, "clients/python")
from trapdoor_client import Trapdoor
td = Trapdoor(os.environ["TRAPDOOR_ENDPOINT"], os.environ["TRAPDOOR_KEY"])
data = os.environ["DATA_DIR"]
ids = {r: td.upload_dataset(r, r.upper(), "NPY_PAIR", {p: f"{data}/{r}/{p}.npy" for p in ("images", "labels")})["id"] for r in ("train", "holdout", "test")}
job = td.wait_for_job(td.launch_training(method="NO_DEFENSE", architecture="small-cnn", hyperparameters={"epochs": 1}, **ids)["id"], poll_seconds=0.5)
td.download(job["id"], f"{data}/mine.safetensors", format="safetensors")`,
      { DATA_DIR: dataDir },
    );
    assert.equal(elsewhere.status, 0, elsewhere.stderr);
    const run = await runPython(readmeExample("python-byo-example"), { DATA_DIR: dataDir });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim().split("\n").at(-1) as string);
    assert.deepEqual([out.model, out.status], ["READY", "SUCCEEDED"]);
    assert.equal(out.before.all.perClassAccuracy.length, 4);
    assert.equal(out.after.all.timings.pretrainSeconds, 0);
    assert.ok(readFileSync(join(dataDir, "defended.onnx")).length > 1000);
  });

  it("raises TrapdoorError with the API's code and field", async () => {
    const run = await runPython(`import json, os, sys
sys.path.insert(0, "clients/python")
from trapdoor_client import Trapdoor, TrapdoorError
td = Trapdoor(os.environ["TRAPDOOR_ENDPOINT"], os.environ["TRAPDOOR_KEY"])
out = {}
try:
    td.launch_training(method="NO_SUCH_METHOD", train="00000000-0000-4000-8000-000000000001", holdout="00000000-0000-4000-8000-000000000002", test="00000000-0000-4000-8000-000000000003")
except TrapdoorError as e:
    out["launch"] = [e.code, e.field]
try:
    Trapdoor(os.environ["TRAPDOOR_ENDPOINT"], "td_wrong").jobs()
except TrapdoorError as e:
    out["key"] = [e.code, e.status]
try:
    td.wait_for_job("00000000-0000-4000-8000-000000000009")
except TrapdoorError as e:
    out["missing"] = e.code
try:
    td.jobs(labels={"bad key": "x"})
except TrapdoorError as e:
    out["filter"] = [e.code, e.field]
print(json.dumps(out))`);
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout.trim());
    assert.equal(out.launch[0], "BAD_USER_INPUT");
    assert.equal(out.key[0], "UNAUTHENTICATED");
    assert.equal(out.missing, "NOT_FOUND");
    assert.deepEqual(out.filter, ["BAD_USER_INPUT", "filter.labels.bad key"]);
  });
});
