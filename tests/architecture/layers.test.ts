import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const depcruise = join(root, "node_modules", ".bin", "depcruise");

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

/** Runs the project's rules over `src/` (and `more`) of `cwd`; returns the violations. */
function violations(cwd: string, more: string[] = []): Violation[] {
  const run = spawnSync(
    depcruise,
    ["src", ...more, "--config", join(root, ".dependency-cruiser.cjs"), "--output-type", "json"],
    { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  assert.ok(run.stdout, `depcruise printed nothing: ${run.stderr}`);
  return (JSON.parse(run.stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

describe("control-plane layers (.dependency-cruiser.cjs)", () => {
  const scratch = mkdtempSync(join(tmpdir(), "trapdoor-layers-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  /** A throwaway tree: the given files (path → source) plus the project's tsconfig. */
  function tree(files: Record<string, string>): string {
    const dir = mkdtempSync(join(scratch, "tree-"));
    cpSync(join(root, "tsconfig.json"), join(dir, "tsconfig.json"));
    for (const [path, source] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), source);
    }
    return dir;
  }

  it("src/, the client package and the console have no violation and no exception listed", () => {
    assert.deepEqual(violations(root, ["clients/typescript", "console/src"]), []);
  });

  it("an upward import fails: the database importing the API", () => {
    const found = violations(
      tree({
        "src/api/errors.ts": "export const code = 1;\n",
        "src/db/jobs.ts": 'import { code } from "../api/errors.ts";\nexport const x = code;\n',
      }),
    );
    assert.deepEqual(
      found.map((v) => [v.rule.name, v.from, v.to]),
      [["infra-stays-in-its-folder", "src/db/jobs.ts", "src/api/errors.ts"]],
    );
  });

  it("the API reaching past the services to the database fails, type-only imports included", () => {
    const found = violations(
      tree({
        "src/db/jobs.ts": "export interface JobRow { id: string }\n",
        "src/api/resolvers.ts":
          'import type { JobRow } from "../db/jobs.ts";\nexport const f = (j: JobRow) => j.id;\n',
      }),
    );
    assert.deepEqual(
      found.map((v) => v.rule.name),
      ["api-uses-services-only"],
    );
  });

  it("a type-only import cycle fails", () => {
    const found = violations(
      tree({
        "src/datasets/a.ts": 'import type { B } from "./b.ts";\nexport interface A { b?: B }\n',
        "src/datasets/b.ts": 'import type { A } from "./a.ts";\nexport interface B { a?: A }\n',
      }),
    );
    assert.ok(
      found.some((v) => v.rule.name === "no-cycles"),
      JSON.stringify(found),
    );
  });

  it("the worker using the API fails", () => {
    const found = violations(
      tree({
        "src/api/server.ts": "export const start = () => 1;\n",
        "src/worker/index.ts": 'import { start } from "../api/server.ts";\nexport const w = start;\n',
      }),
    );
    assert.deepEqual(
      found.map((v) => v.rule.name),
      ["worker-uses-services-and-trainer-client"],
    );
  });

  it("the console importing the service fails; the types generated from the schema do not", () => {
    const found = violations(
      tree({
        "src/config.ts": "export const port = 1;\n",
        "clients/typescript/src/generated/schema.ts": "export type JobStatus = 'QUEUED';\n",
        "console/src/a.ts":
          'import type { JobStatus } from "../../clients/typescript/src/generated/schema.ts";\nexport const s: JobStatus = "QUEUED";\n',
        "console/src/b.ts": 'import { port } from "../../src/config.ts";\nexport const p = port;\n',
      }),
      ["console/src"],
    );
    assert.deepEqual(
      found.map((v) => [v.rule.name, v.from, v.to]),
      [["console-uses-the-public-api-only", "console/src/b.ts", "src/config.ts"]],
    );
  });
});
