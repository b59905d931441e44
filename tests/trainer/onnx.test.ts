// The trainer's ONNX export runs in onnxruntime (what serving clients use) and agrees with PyTorch.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as ort from "onnxruntime-node";

const run = promisify(execFile);
const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";
const trainerDir = fileURLToPath(new URL("../../trainer", import.meta.url));
const tolerance = 1e-4;

interface Fixture {
  input: number[];
  shape: [number, number, number, number];
  logits: number[];
}

interface Case {
  architecture: string;
  channels: number;
  height: number;
  width: number;
  classes: number;
}

const cases: Case[] = [
  { architecture: "small-cnn", channels: 1, height: 28, width: 28, classes: 10 },
  // 30 is not a multiple of the stem's stride: the zero padding must live inside the graph.
  { architecture: "wrn16-1", channels: 1, height: 30, width: 30, classes: 10 },
  { architecture: "wrn16-1", channels: 3, height: 32, width: 32, classes: 43 },
];

const workdirs: string[] = [];
after(async () => {
  await Promise.all(workdirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function exportFixture(c: Case): Promise<{ dir: string; fixture: Fixture }> {
  const dir = await mkdtemp(join(tmpdir(), "trapdoor-onnx-"));
  workdirs.push(dir);
  const args = ["-m", "trapdoor_trainer.export_fixture", dir, "--architecture", c.architecture];
  args.push("--channels", String(c.channels), "--height", String(c.height), "--width", String(c.width));
  args.push("--classes", String(c.classes), "--seed", "0");
  await run(python, args, { cwd: trainerDir, timeout: 120_000 });
  const fixture = JSON.parse(await readFile(join(dir, "fixture.json"), "utf8")) as Fixture;
  return { dir, fixture };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i += 1) {
    worst = Math.max(worst, Math.abs((actual[i] ?? Number.NaN) - (expected[i] ?? Number.NaN)));
  }
  assert.ok(worst <= tolerance, `${label}: max |onnx - torch| = ${worst} > ${tolerance}`);
}

function tensorShape(
  metadata: ort.InferenceSession.ValueMetadata | undefined,
): ReadonlyArray<number | string> {
  assert.ok(metadata?.isTensor, "expected tensor metadata");
  return metadata.shape;
}

describe("ONNX export runs in onnxruntime-node", () => {
  for (const c of cases) {
    test(`${c.architecture} ${c.channels}x${c.height}x${c.width}`, async () => {
      const { dir, fixture } = await exportFixture(c);
      const [batch, channels, height, width] = fixture.shape;
      assert.deepEqual(fixture.shape, [3, c.channels, c.height, c.width]);

      const session = await ort.InferenceSession.create(join(dir, "model.onnx"));
      try {
        assert.deepEqual(session.inputNames, ["input"]);
        assert.deepEqual(session.outputNames, ["logits"]);
        const inputShape = tensorShape(session.inputMetadata[0]);
        assert.equal(typeof inputShape[0], "string", "batch axis must be symbolic");
        assert.deepEqual(inputShape.slice(1), [c.channels, c.height, c.width]);
        const outputShape = tensorShape(session.outputMetadata[0]);
        assert.equal(typeof outputShape[0], "string", "logits batch axis must be symbolic");
        assert.equal(outputShape[1], c.classes);

        const full = new ort.Tensor("float32", Float32Array.from(fixture.input), [
          batch,
          channels,
          height,
          width,
        ]);
        const fullOut = (await session.run({ input: full })).logits;
        assert.ok(fullOut);
        assert.deepEqual(fullOut.dims, [batch, c.classes]);
        assertClose(fullOut.data as Float32Array, fixture.logits, "batch 3");

        // The same graph with a different batch size: the first sample alone.
        const perSample = channels * height * width;
        const first = new ort.Tensor("float32", Float32Array.from(fixture.input.slice(0, perSample)), [
          1,
          channels,
          height,
          width,
        ]);
        const firstOut = (await session.run({ input: first })).logits;
        assert.ok(firstOut);
        assert.deepEqual(firstOut.dims, [1, c.classes]);
        assertClose(firstOut.data as Float32Array, fixture.logits.slice(0, c.classes), "batch 1");
      } finally {
        await session.release();
      }
    });
  }
});
