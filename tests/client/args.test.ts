import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { assignParts, keyValues } from "../../src/client/args.ts";
import { configPath, loadCredentials, normalizeEndpoint, saveCredentials } from "../../src/client/config.ts";
import { CliError, ExitCode } from "../../src/client/exit-codes.ts";
import { table } from "../../src/client/output.ts";

const exitCode = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof CliError, String(error));
    return error.exitCode;
  }
  assert.fail("no error");
};

describe("client command-line parsing", () => {
  it("endpoints: a base URL gets /graphql, a proxy prefix is kept, only http(s)", () => {
    assert.equal(normalizeEndpoint("http://127.0.0.1:4000"), "http://127.0.0.1:4000/graphql");
    assert.equal(
      normalizeEndpoint("https://ml.example/trapdoor/graphql"),
      "https://ml.example/trapdoor/graphql",
    );
    assert.equal(
      exitCode(() => normalizeEndpoint("ftp://x")),
      ExitCode.USAGE,
    );
    assert.equal(
      exitCode(() => normalizeEndpoint("not a url")),
      ExitCode.USAGE,
    );
  });

  it("--hp key=value: JSON values where they parse, strings otherwise", () => {
    assert.deepEqual(
      keyValues(
        ["stage1Epochs=2", "lambda1=0.5", "stage2Recipe=official", "flag=true", "sizes=[1,2]", "x=null"],
        "--hp",
      ),
      { stage1Epochs: 2, lambda1: 0.5, stage2Recipe: "official", flag: true, sizes: [1, 2], x: null },
    );
    assert.equal(
      exitCode(() => keyValues(["epochs"], "--hp")),
      ExitCode.USAGE,
    );
    assert.equal(
      exitCode(() => keyValues(["=3"], "--hp")),
      ExitCode.USAGE,
    );
  });

  it("upload files become parts by name, by file name, or by order", () => {
    assert.deepEqual(assignParts(["d/train.npz"]), [{ part: null, path: "d/train.npz" }]);
    assert.deepEqual(assignParts(["t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]), [
      { part: "labels", path: "t10k-labels-idx1-ubyte.gz" },
      { part: "images", path: "t10k-images-idx3-ubyte.gz" },
    ]);
    assert.deepEqual(assignParts(["x.npy", "y.npy"]), [
      { part: "images", path: "x.npy" },
      { part: "labels", path: "y.npy" },
    ]);
    assert.deepEqual(assignParts(["archive=/data/a=b.tar"]), [{ part: "archive", path: "/data/a=b.tar" }]);
    assert.equal(
      exitCode(() => assignParts(["a", "b", "c"])),
      ExitCode.USAGE,
    );
    assert.equal(
      exitCode(() => assignParts(["images=a", "b"])),
      ExitCode.USAGE,
    );
    assert.equal(
      exitCode(() => assignParts([])),
      ExitCode.USAGE,
    );
  });

  it("credentials: the file, overridden one by one by TRAPDOOR_ENDPOINT and TRAPDOOR_KEY", () => {
    const env = { XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "trapdoor-cfg-")) };
    assert.equal(
      exitCode(() => loadCredentials(env)),
      ExitCode.AUTH,
    );
    saveCredentials({ endpoint: "http://a:1/graphql", key: "td_file" }, env);
    assert.deepEqual(loadCredentials(env), { endpoint: "http://a:1/graphql", key: "td_file" });
    assert.deepEqual(loadCredentials({ ...env, TRAPDOOR_KEY: "td_env" }), {
      endpoint: "http://a:1/graphql",
      key: "td_env",
    });
    assert.deepEqual(loadCredentials({ ...env, TRAPDOOR_ENDPOINT: "http://b:2" }), {
      endpoint: "http://b:2/graphql",
      key: "td_file",
    });
    writeFileSync(configPath(env), "{not json");
    assert.equal(
      exitCode(() => loadCredentials(env)),
      ExitCode.USAGE,
    );
  });

  it("tables pad columns and right-align numbers", () => {
    assert.equal(
      table(
        ["METRIC", "VALUE"],
        [
          ["ASR", "5.00 %"],
          ["CA", "91.33 %"],
        ],
      ),
      ["METRIC    VALUE", "------  -------", "ASR      5.00 %", "CA      91.33 %"].join("\n"),
    );
  });
});
