/**
 * Ingest's resize against Pillow's own `Image.resize(..., BILINEAR)` (Debian's python3-pil,
 * which `make test` installs): the same bytes for shrinking, enlarging, one axis only, grey and
 * RGB, and the odd sizes where rounding of the filter's bounds matters.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { resizeBilinear } from "../../src/datasets/images/resize.ts";
import { python } from "../helpers/app.ts";
import { pattern } from "./helpers.ts";

interface Case {
  w: number;
  h: number;
  c: 1 | 3;
  W: number;
  H: number;
  data: string;
}

const PILLOW = `
import base64, json, sys
from PIL import Image
out = []
for case in json.load(sys.stdin):
    mode = "L" if case["c"] == 1 else "RGB"
    image = Image.frombytes(mode, (case["w"], case["h"]), base64.b64decode(case["data"]))
    out.append(base64.b64encode(image.resize((case["W"], case["H"]), Image.BILINEAR).tobytes()).decode())
print(json.dumps(out))
`;

function pillowResize(cases: Case[]): Buffer[] {
  const run = spawnSync(python, ["-c", PILLOW], {
    input: JSON.stringify(cases),
    encoding: "utf8",
    maxBuffer: 1 << 26,
  });
  assert.equal(run.status, 0, run.stderr);
  return (JSON.parse(run.stdout) as string[]).map((b) => Buffer.from(b, "base64"));
}

describe("resizeBilinear", () => {
  test("matches Pillow's BILINEAR byte for byte", () => {
    const sizes: Array<[number, number, number, number]> = [
      [55, 55, 32, 32], // GTSRB's common case
      [250, 243, 32, 32], // a shrink by ~8
      [64, 64, 28, 28],
      [7, 30, 12, 8], // one axis up, the other down
      [3, 3, 4, 5], // enlarging
      [1, 1, 5, 3],
      [40, 10, 40, 25], // vertical only
      [40, 10, 13, 10], // horizontal only
      [97, 61, 33, 17],
      [5, 200, 1, 1],
    ];
    const cases: Case[] = [];
    let seed = 1;
    for (const [w, h, W, H] of sizes) {
      for (const c of [1, 3] as const) {
        const data = Buffer.from(pattern(w * h * c, seed++));
        cases.push({ w, h, c, W, H, data: data.toString("base64") });
      }
    }
    const expected = pillowResize(cases);
    cases.forEach((k, i) => {
      const input = { data: Buffer.from(k.data, "base64"), width: k.w, height: k.h, channels: k.c };
      const got = resizeBilinear(input, k.W, k.H);
      assert.deepEqual([got.width, got.height, got.channels], [k.W, k.H, k.c]);
      const want = expected[i] as Buffer;
      const first = got.data.findIndex((v, j) => v !== want[j]);
      assert.equal(first, -1, `${k.w}x${k.h}x${k.c} → ${k.W}x${k.H}: first difference at byte ${first}`);
    });
  });

  test("keeps a flat colour, returns an image already at the size untouched", () => {
    const flat = { data: Buffer.alloc(9 * 9 * 3, 200), width: 9, height: 9, channels: 3 as const };
    assert.ok(resizeBilinear(flat, 4, 5).data.every((v) => v === 200));
    assert.equal(resizeBilinear(flat, 9, 9), flat);
  });
});
