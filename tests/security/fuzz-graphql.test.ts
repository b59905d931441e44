/**
 * Property-based abuse of the GraphQL API: every mutation and id-taking query gets arbitrary,
 * huge (100 KB), unicode and wrongly typed values, prototype-pollution keys in JSON inputs,
 * and negative or huge numbers. Property: the HTTP status is 200 or 400, every error carries an
 * `extensions.code` other than INTERNAL_SERVER_ERROR, nothing pollutes Object.prototype, and
 * the server still answers a normal query afterwards. One app serves every case.
 *
 * The seed is fixed (SEED, also in the test name); fast-check prints it and the counterexample's
 * path on failure, to replay with `{ seed, path }`.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { gql, startTestApp } from "../helpers/app.ts";

type TestApp = Awaited<ReturnType<typeof startTestApp>>;

const SEED = 0x5eed_00a1;
const RUNS = 300;
const CASE_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Values

/** Objects whose own keys would pollute a prototype if merged naively (JSON.parse keeps them). */
const POLLUTERS: unknown[] = [
  JSON.parse('{"__proto__": {"polluted": "yes"}}'),
  JSON.parse('{"constructor": {"prototype": {"polluted": "yes"}}}'),
  JSON.parse('{"prototype": {"polluted": "yes"}, "toString": 1, "valueOf": "x", "hasOwnProperty": null}'),
  JSON.parse('{"a": {"__proto__": {"polluted": "yes"}}, "lr": 0.1, "epochs": {"__proto__": 3}}'),
  JSON.parse('[{"__proto__": {"polluted": "yes"}}]'),
];

const deep = (depth: number): unknown => {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
};

const HUGE = "x".repeat(100_000);
const HUGE_UNICODE = "é😀\u202e\u0000".repeat(20_000);

const stringArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "",
      " ",
      "__proto__",
      "constructor",
      "prototype",
      "0",
      "-1",
      "NaN",
      "null",
      "00000000-0000-0000-0000-000000000000",
      "ffffffff-ffff-ffff-ffff-ffffffffffff",
      "' OR '1'='1' --",
      "%s%n%x",
      "../../etc/passwd",
      "\0",
      "\uD800",
      "\uFEFF",
      Buffer.from('{"id":"__proto__"}').toString("base64"),
      Buffer.from('{"createdAt":"x","id":1}').toString("base64url"),
      Buffer.from("\0\0\0").toString("base64"),
      "=".repeat(100),
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(HUGE, HUGE_UNICODE) },
);

const numberArb: fc.Arbitrary<number> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(
    -1,
    0,
    1,
    2 ** 31,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 53,
    -(2 ** 53),
    1e308,
    -1e308,
    5e-324,
    0.5,
  ),
);

/** Anything JSON can carry: for JSON-typed inputs, and as a wrong type for every other one. */
const anyArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: fc.constantFrom(...POLLUTERS) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      deep(200),
      deep(3000),
      Array.from({ length: 5000 }, (_, i) => i),
    ),
  },
  { weight: 1, arbitrary: stringArb },
  { weight: 1, arbitrary: numberArb },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}) },
);

/** Mostly the field's own type, sometimes anything at all. */
const field = <T>(own: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 4, arbitrary: own }, { weight: 1, arbitrary: anyArb });
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 });

const enumArb = (...values: string[]) =>
  field(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, stringArb));
const sha = fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), stringArb);

// ---------------------------------------------------------------------------------------------
// Operations

interface Operation {
  name: string;
  query: string;
  variables: Record<string, unknown>;
}

const op = (name: string, query: string) => (variables: Record<string, unknown>) => ({
  name,
  query,
  variables,
});

const idOps = (
  [
    ["deleteDataset", "mutation($id: ID!) { deleteDataset(id: $id) }"],
    ["cancelJob", "mutation($id: ID!) { cancelJob(id: $id) { id status } }"],
    ["retryJob", "mutation($id: ID!) { retryJob(id: $id) { id } }"],
    ["revokeApiKey", "mutation($id: ID!) { revokeApiKey(id: $id) }"],
    ["completeDatasetUpload", "mutation($id: ID!) { completeDatasetUpload(id: $id) { id status } }"],
    ["dataset", "query($id: ID!) { dataset(id: $id) { id name status } }"],
    ["job", "query($id: ID!) { job(id: $id) { id status } }"],
  ] as const
).map(([name, query]) => fc.record({ id: field(stringArb) }).map(op(name, query)));

const pageOps = [
  fc
    .record(
      {
        after: field(stringArb),
        first: field(numberArb),
        status: enumArb("QUEUED", "RUNNING", "FAILED"),
        method: field(stringArb),
      },
      { requiredKeys: [] },
    )
    .map(
      op(
        "jobs",
        "query($after: String, $first: Int, $status: JobStatus, $method: String) { jobs(after: $after, first: $first, status: $status, method: $method) { edges { cursor } pageInfo { hasNextPage endCursor } } }",
      ),
    ),
  fc
    .record(
      { after: field(stringArb), first: field(numberArb), role: enumArb("TRAIN", "TEST") },
      { requiredKeys: [] },
    )
    .map(
      op(
        "datasets",
        "query($after: String, $first: Int, $role: DatasetRole) { datasets(after: $after, first: $first, role: $role) { edges { cursor } } }",
      ),
    ),
];

const partArb = field(
  fc.record(
    { name: field(stringArb), sizeBytes: field(numberArb), sha256: field(sha) },
    { requiredKeys: [] },
  ),
);

const uploadOp = fc
  .record(
    {
      input: field(
        fc.record(
          {
            name: field(stringArb),
            role: enumArb("TRAIN", "HOLDOUT", "TEST", "ASR_TEST"),
            format: enumArb("NPY_PAIR", "NPZ", "IDX", "CIFAR10_BINARY", "CLASS_FOLDERS", "GTSRB"),
            sizeBytes: maybe(field(numberArb)),
            sha256: maybe(field(sha)),
            parts: maybe(field(fc.array(partArb, { maxLength: 3 }))),
            classNames: maybe(field(fc.array(field(stringArb), { maxLength: 50 }))),
            options: maybe(
              field(
                fc.record(
                  {
                    split: enumArb("TRAIN", "TEST"),
                    resize: field(fc.record({ width: field(numberArb), height: field(numberArb) })),
                    channels: field(numberArb),
                    cropToRoi: field(fc.boolean()),
                  },
                  { requiredKeys: [] },
                ),
              ),
            ),
          },
          { requiredKeys: ["name", "role", "format"] },
        ),
      ),
    },
    { requiredKeys: [] },
  )
  .map(
    op(
      "createDatasetUpload",
      "mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { dataset { id status } uploadUrl } }",
    ),
  );

const poisonOp = fc
  .record({
    input: field(
      fc.record(
        {
          sourceId: field(stringArb),
          testDatasetId: maybe(field(stringArb)),
          name: maybe(field(stringArb)),
          attack: field(
            fc.record(
              {
                name: enumArb("badnets", "blend", "wanet"),
                target: field(numberArb),
                ratio: maybe(field(numberArb)),
                seed: maybe(field(numberArb)),
                params: maybe(anyArb),
              },
              { requiredKeys: ["name", "target"] },
            ),
          ),
        },
        { requiredKeys: ["sourceId", "attack"] },
      ),
    ),
  })
  .map(
    op(
      "poisonDataset",
      "mutation($input: PoisonDatasetInput!) { poisonDataset(input: $input) { dataset { id } asrTestDataset { id } } }",
    ),
  );

const launchOp = fc
  .record({
    input: field(
      fc.record(
        {
          method: enumArb("tar", "erm", "abl"),
          architecture: maybe(field(stringArb)),
          trainDatasetId: field(stringArb),
          holdoutDatasetId: field(stringArb),
          testDatasetId: field(stringArb),
          asrTestDatasetId: maybe(field(stringArb)),
          attack: maybe(
            field(
              fc.record(
                { name: field(stringArb), target: field(numberArb), params: maybe(anyArb) },
                { requiredKeys: ["name", "target"] },
              ),
            ),
          ),
          target: maybe(field(numberArb)),
          hyperparameters: maybe(anyArb),
          seed: maybe(field(numberArb)),
          resources: maybe(
            field(
              fc.record(
                {
                  gpu: field(fc.boolean()),
                  accelerator: enumArb("CPU", "GPU"),
                  gpus: field(numberArb),
                  maxRuntimeSeconds: field(numberArb),
                },
                { requiredKeys: [] },
              ),
            ),
          ),
          idempotencyKey: field(stringArb),
        },
        { requiredKeys: ["method", "trainDatasetId", "holdoutDatasetId", "testDatasetId", "idempotencyKey"] },
      ),
    ),
  })
  .map(
    op(
      "launchTraining",
      "mutation($input: LaunchTrainingInput!) { launchTraining(input: $input) { id status } }",
    ),
  );

const apiKeyOp = fc
  .record({ name: field(stringArb) })
  .map(op("createApiKey", "mutation($name: String!) { createApiKey(name: $name) { id name } }"));

/** Values written into the query text instead of variables: the parser and literal coercion. */
const inlineOp = fc
  .record({ value: stringArb, number: numberArb, which: fc.nat() })
  .map(({ value, number, which }): Operation => {
    const text = JSON.stringify(value);
    const queries = [
      `mutation { createApiKey(name: ${text}) { id } }`,
      `query { dataset(id: ${text}) { id } }`,
      `query { jobs(after: ${text}, first: ${Number.isFinite(number) ? number : 0}) { edges { cursor } } }`,
      `mutation { deleteDataset(id: ${Number.isFinite(number) ? number : 1}) }`,
      `query { job(id: ${text}) { id } } ${value.slice(0, 200)}`,
      `mutation { launchTraining(input: { method: ${text}, trainDatasetId: "1", holdoutDatasetId: "2", testDatasetId: "3", idempotencyKey: "k", hyperparameters: { __proto__: { polluted: "yes" }, constructor: { prototype: { x: 1 } } } }) { id } }`,
    ];
    return { name: "inline", query: queries[which % queries.length] as string, variables: {} };
  });

const operationArb: fc.Arbitrary<Operation> = fc.oneof(
  ...idOps,
  ...pageOps,
  { weight: 3, arbitrary: uploadOp },
  { weight: 2, arbitrary: poisonOp },
  { weight: 3, arbitrary: launchOp },
  { weight: 2, arbitrary: apiKeyOp },
  { weight: 2, arbitrary: inlineOp },
);

// ---------------------------------------------------------------------------------------------
// The property

interface GraphQLBody {
  data?: unknown;
  errors?: { message: string; extensions?: { code?: string } }[];
}

async function post(app: TestApp, operation: Operation): Promise<{ status: number; body: GraphQLBody }> {
  const res = await fetch(`${app.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${app.key}` },
    body: JSON.stringify({ query: operation.query, variables: operation.variables }),
  });
  const text = await res.text();
  let body: GraphQLBody;
  try {
    body = JSON.parse(text) as GraphQLBody;
  } catch {
    assert.fail(`${operation.name}: status ${res.status}, not JSON: ${text.slice(0, 300)}`);
  }
  return { status: res.status, body };
}

function checkAnswer(operation: Operation, status: number, body: GraphQLBody): string {
  const shown = () => `${operation.name} -> ${status} ${JSON.stringify(body).slice(0, 500)}`;
  assert.ok(status === 200 || status === 400, shown());
  for (const error of body.errors ?? []) {
    const code = error.extensions?.code;
    const which = `${operation.name} -> ${status}: ${JSON.stringify(error).slice(0, 500)}`;
    assert.ok(typeof code === "string" && code !== "", `an error without a code: ${which}`);
    assert.notEqual(code, "INTERNAL_SERVER_ERROR", which);
  }
  assert.ok(body.data !== undefined || (body.errors?.length ?? 0) > 0, shown());
  assert.equal(
    ({} as Record<string, unknown>).polluted,
    undefined,
    `Object.prototype polluted by ${operation.name}`,
  );
  return body.errors?.[0]?.extensions?.code ?? "ok";
}

describe("GraphQL fuzzing: arbitrary inputs get 200/400 and typed errors, never INTERNAL_SERVER_ERROR", () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({}, { api: true, worker: false });
  });
  after(async () => {
    await app?.cleanup();
  });

  it(`${RUNS} cases over every mutation, dataset(id), job(id), jobs(after:) (seed ${SEED})`, async () => {
    const seen = new Map<string, number>();
    const property = fc.asyncProperty(operationArb, async (operation) => {
      const { status, body } = await post(app, operation);
      const key = `${operation.name}:${checkAnswer(operation, status, body)}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    });
    try {
      await fc.assert(property, { seed: SEED, numRuns: RUNS, timeout: CASE_TIMEOUT_MS, endOnFailure: true });
    } catch (e) {
      // Counterexamples may hold 100 KB strings: keep the seed, path and cause.
      const error = e as Error & { cause?: unknown };
      const cause = error.cause instanceof Error ? error.cause.message : String(error.cause);
      throw new Error(`${error.message.slice(0, 600)}\n...\ncause: ${cause.slice(0, 2000)}`);
    }
    if (process.env.FUZZ_STATS) console.log(JSON.stringify(Object.fromEntries(seen)));
    const families = new Set([...seen.keys()].map((key) => key.split(":")[0]));
    assert.ok(families.size >= 12, `operations reached: ${[...families].join(", ")}`);

    const res = await gql<{ viewer: { id: string } }>(app.url as string, app.key, "{ viewer { id } }");
    assert.ok(res.data?.viewer.id, JSON.stringify(res));
  });

  it("regression: a NUL character Postgres cannot store is BAD_USER_INPUT", async () => {
    const { status, body } = await post(app, {
      name: "createApiKey",
      query: "mutation($name: String!) { createApiKey(name: $name) { id } }",
      variables: { name: "a\u0000b" },
    });
    assert.equal(
      checkAnswer({ name: "createApiKey", query: "", variables: {} }, status, body),
      "BAD_USER_INPUT",
    );
  });

  it("regression: more than 50 bad variable values is BAD_USER_INPUT throughout", async () => {
    const { status, body } = await post(app, {
      name: "createDatasetUpload",
      query:
        "mutation($input: CreateDatasetUploadInput!) { createDatasetUpload(input: $input) { uploadUrl } }",
      variables: { input: { name: "a", role: "TRAIN", format: "NPZ", parts: Array(60).fill(0) } },
    });
    assert.equal(status, 400);
    assert.equal(body.errors?.length, 51);
    assert.deepEqual(new Set(body.errors?.map((e) => e.extensions?.code)), new Set(["BAD_USER_INPUT"]));
  });
});
