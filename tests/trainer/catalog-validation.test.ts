import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Catalog, type JsonSchema } from "../../src/trainer/catalog.ts";

const trainerRoot = fileURLToPath(new URL("../../trainer", import.meta.url));
const python = process.env.TRAPDOOR_PYTHON ?? "/usr/bin/python3";

interface Case {
  kind: "method" | "attack";
  name: string;
  /** JSON text, parsed on both sides as a request body would be (own `__proto__` keys included). */
  json: string;
}

/** Values around each property's type, bounds and choices, wrong types, and names that are not parameters. */
function valuesFor(schema: JsonSchema): unknown[] {
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const values: unknown[] = [
    null,
    true,
    false,
    "text",
    "",
    [],
    {},
    [1, 2],
    0,
    1,
    -1,
    1.5,
    3.0,
    1e300,
    -1e300,
  ];
  if (schema.default !== undefined) values.push(schema.default);
  for (const choice of schema.enum ?? []) values.push(choice);
  for (const bound of [schema.minimum, schema.maximum]) {
    if (bound === undefined) continue;
    values.push(bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5);
  }
  if (types.includes("string")) values.push("crop-flip", "CROP-FLIP", "none ");
  if (types.includes("array")) values.push([[0, 255]], [[[1]]]);
  return values;
}

const NOT_PARAMETERS = [
  "constructor",
  "__proto__",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "nonexistent",
  "",
];

function corpus(catalog: Catalog): Case[] {
  const cases: Case[] = [];
  const targets: [Case["kind"], string, JsonSchema][] = [
    ...catalog.data.methods.map(
      (m) => ["method", m.name, m.hyperparametersSchema] as [Case["kind"], string, JsonSchema],
    ),
    ...catalog.data.attacks.map(
      (a) => ["attack", a.name, a.paramsSchema] as [Case["kind"], string, JsonSchema],
    ),
  ];
  for (const [kind, name, schema] of targets) {
    const add = (json: string) => cases.push({ kind, name, json });
    for (const whole of ["{}", "null", "[]", '"x"', "5", "true"]) add(whole);
    const required = schema.required ?? [];
    const base: Record<string, unknown> = {};
    for (const key of required) base[key] = schema.properties?.[key]?.default ?? [[1]];
    for (const [property, propertySchema] of Object.entries(schema.properties ?? {})) {
      for (const value of valuesFor(propertySchema)) add(JSON.stringify({ ...base, [property]: value }));
    }
    for (const key of NOT_PARAMETERS) add(`{${JSON.stringify(key)}: 1}`);
    const defaults = Object.fromEntries(
      Object.entries(schema.properties ?? {}).map(([k, p]) => [k, p.default ?? base[k] ?? null]),
    );
    add(JSON.stringify(defaults));
  }
  return cases;
}

interface Verdict {
  ok: boolean;
  field?: string;
}

describe("launch parameters: the API and the trainer validate with the same schema", () => {
  it("accept and refuse exactly the same values on a generated corpus, naming the same field", () => {
    const catalog = Catalog.load();
    const cases = corpus(catalog);
    assert.ok(cases.length > 1000, `corpus has only ${cases.length} cases`);
    const input = cases.map(
      (c) => `{"kind":${JSON.stringify(c.kind)},"name":${JSON.stringify(c.name)},"value":${c.json}}`,
    );
    const run = spawnSync(python, ["-m", "trapdoor_trainer", "validate-params"], {
      cwd: trainerRoot,
      input: `${input.join("\n")}\n`,
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
      timeout: 120_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const trainer = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Verdict);
    assert.equal(trainer.length, cases.length);
    let accepted = 0;
    const disagreements: string[] = [];
    cases.forEach((c, i) => {
      const value = JSON.parse(c.json);
      const problem =
        c.kind === "method"
          ? catalog.checkHyperparameters(catalog.method(c.name) as never, value)
          : catalog.checkAttackParams(catalog.attack(c.name) as never, value);
      const api: Verdict = problem ? { ok: false, field: problem.field } : { ok: true };
      const py = trainer[i] as Verdict;
      if (api.ok) accepted++;
      if (api.ok !== py.ok || (!api.ok && api.field !== py.field))
        disagreements.push(
          `${c.kind} ${c.name} ${c.json}: API ${JSON.stringify(api)}, trainer ${JSON.stringify(py)}`,
        );
    });
    assert.deepEqual(disagreements.slice(0, 20), []);
    // Both outcomes are well represented, so agreement is not vacuous.
    assert.ok(accepted > 100 && cases.length - accepted > 500, `accepted ${accepted} of ${cases.length}`);
  });

  it("names inherited object properties as unknown parameters, never as accepted", () => {
    const catalog = Catalog.load();
    const method = catalog.method("TRAP_AND_REPLACE");
    assert.ok(method);
    for (const key of ["constructor", "__proto__", "toString"]) {
      const problem = catalog.checkHyperparameters(method, JSON.parse(`{${JSON.stringify(key)}: 1}`));
      assert.equal(problem?.field, `hyperparameters.${key}`);
      assert.match(problem?.message ?? "", /unknown hyper-parameter/);
    }
    const blend = catalog.attack("blend");
    assert.ok(blend);
    assert.equal(catalog.checkAttackParams(blend, { constructor: 1 })?.field, "attack.params.constructor");
    assert.equal(catalog.checkAttackParams(blend, { alpha: 0.3 }), null);
    assert.equal(catalog.checkAttackParams(blend, { alpha: 2 })?.field, "attack.params.alpha");
  });
});
