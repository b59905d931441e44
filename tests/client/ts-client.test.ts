/**
 * The TypeScript client package (clients/typescript): its generated schema types are those of
 * schema/schema.graphql, and the README's example runs against a live service as written.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { generate } from "@graphql-codegen/cli";
import { makeDatasets, startTestApp } from "../helpers/app.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

describe("the TypeScript client", () => {
  it("has the schema types GraphQL Code Generator makes from schema/schema.graphql now (make codegen)", async () => {
    const config = JSON.parse(readFileSync(join(repo, "clients/typescript/codegen.json"), "utf8"));
    const outputs = (await generate({ ...config, cwd: repo, silent: true }, false)) as {
      filename: string;
      content: string;
    }[];
    assert.equal(outputs.length, 1);
    const committed = readFileSync(join(repo, "clients/typescript/src/generated/schema.ts"), "utf8");
    assert.ok(
      outputs[0]?.content === committed,
      "clients/typescript/src/generated/schema.ts is stale: run make codegen",
    );
    assert.match(committed, /export type LaunchTrainingInput = \{/);
  });

  describe("against a live service", () => {
    let app: Awaited<ReturnType<typeof startTestApp>>;
    before(async () => {
      app = await startTestApp();
    });
    after(async () => {
      await app?.cleanup();
    });

    it("runs the README example: upload, launch, follow, download, read the health report", async () => {
      const readme = readFileSync(join(repo, "README.md"), "utf8");
      const code =
        /<!-- ts-client-example:start -->\s*```ts\n([\s\S]*?)```\s*<!-- ts-client-example:end -->/.exec(
          readme,
        )?.[1];
      assert.ok(code, "the README has the TypeScript example");
      const data = makeDatasets(mkdtempSync(join(tmpdir(), "trapdoor-tsclient-")), {
        nTrain: 200,
        nHoldout: 40,
        nTest: 40,
      });
      const dataDir = dirname(data.train);
      // Asynchronously: the service answering it lives in this process.
      const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
        execFile(
          join(repo, "node_modules/.bin/tsx"),
          ["--input-type=module", "--eval", code],
          {
            cwd: repo,
            timeout: 240_000,
            env: {
              ...process.env,
              TRAPDOOR_ENDPOINT: app.url as string,
              TRAPDOOR_KEY: app.key,
              DATA_DIR: dataDir,
            },
          },
          (error, out, err) =>
            error ? reject(new Error(`${error.message}\n${err}`)) : resolve({ stdout: out }),
        ),
      );
      const result = JSON.parse(stdout.trim().split("\n").at(-1) as string);
      assert.equal(result.status, "SUCCEEDED");
      assert.ok(result.ca >= 0 && result.ca <= 1);
      assert.ok(["CLEAN", "POISONED", "INCONCLUSIVE"].includes(result.verdict));
      assert.equal(result.top, 3);
      // The T&R report's calibration came through the typed query: a share of clean runs.
      assert.ok(result.falsePositives.of > 0 && result.falsePositives.count <= result.falsePositives.of);
      const onnx = readFileSync(join(dataDir, "model.onnx"));
      assert.ok(onnx.length > 1000);
    });
  });
});
