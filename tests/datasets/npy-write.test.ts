import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { npyHeader } from "../../src/datasets/npy-write.ts";
import { runPython } from "./helpers.ts";

describe("npyHeader", () => {
  it("is byte for byte the header numpy writes", () => {
    const cases: Array<[string, number[]]> = [
      ["|u1", [60000, 28, 28, 1]],
      ["<i8", [60000]],
      ["|u1", [1, 1, 1, 3]],
      ["<i8", [0]],
      ["<f4", [123456789, 2]],
      ["|u1", []],
    ];
    const code = [
      "import io, json, sys, numpy as np",
      "from numpy.lib import format as fmt",
      "out = []",
      "for descr, shape in json.loads(sys.argv[1]):",
      "    b = io.BytesIO()",
      "    fmt.write_array_header_1_0(b, {'descr': descr, 'fortran_order': False, 'shape': tuple(shape)})",
      "    out.append(b.getvalue().hex())",
      "print(json.dumps(out))",
    ].join("\n");
    const expected = JSON.parse(runPython(code, JSON.stringify(cases))) as string[];
    cases.forEach(([descr, shape], i) => {
      const header = npyHeader(descr, shape);
      assert.equal(header.toString("hex"), expected[i], `${descr} ${shape}`);
      assert.equal(header.length % 64, 0);
    });
  });
});
