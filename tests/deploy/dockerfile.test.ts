import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

interface Instruction {
  stage: string;
  keyword: string;
  args: string;
}

/** The Dockerfile's instructions (continuation lines joined, comments dropped), with their stage. */
function instructions(): { args: Record<string, string>; list: Instruction[] } {
  const text = readFileSync(join(repo, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const args: Record<string, string> = {};
  const list: Instruction[] = [];
  let stage = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [keyword = "", ...rest] = line.split(/\s+/);
    const body = rest.join(" ");
    if (keyword === "FROM") stage = /\bAS\s+(\S+)/i.exec(body)?.[1] ?? "";
    if (keyword === "ARG" && !stage) {
      const [name = "", value = ""] = body.split("=");
      args[name] = value;
    }
    list.push({ stage, keyword, args: body });
  }
  return { args, list };
}

const execForm = (args: string): string[] => JSON.parse(args) as string[];

describe("Dockerfile", () => {
  const { args, list } = instructions();
  const inStage = (stage: string, keyword: string) =>
    list.filter((i) => i.stage === stage && i.keyword === keyword);

  it("has the build, api and worker stages, each final image running as a non-root user", () => {
    const stages = list.filter((i) => i.keyword === "FROM").map((i) => i.stage);
    assert.deepEqual(stages, ["build", "api", "worker"]);
    for (const stage of ["api", "worker"]) {
      const users = inStage(stage, "USER").map((i) => i.args);
      assert.equal(users.length, 1, `${stage} sets USER once`);
      assert.notEqual(users[0], "root");
      assert.notEqual(users[0], "0");
    }
  });

  it("pins base images by exact tag: Node 24 LTS and a CUDA PyTorch 2.x runtime, never latest", () => {
    for (const from of list.filter((i) => i.keyword === "FROM")) {
      const image = from.args.split(/\s+/)[0] as string;
      const resolved = image.replace(/^\$\{(\w+)\}$/, (_, name: string) => args[name] ?? "");
      assert.match(resolved, /^[\w./-]+:[\w.-]+$/, `${image} has an explicit tag`);
      assert.doesNotMatch(resolved, /:latest$/);
    }
    assert.match(args.NODE_IMAGE ?? "", /^node:24\.\d+\.\d+-[\w-]*slim$/);
    assert.match(args.TORCH_IMAGE ?? "", /^pytorch\/pytorch:2\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime$/);
  });

  it("copies only sources that exist and that .dockerignore lets into the context", () => {
    const ignored = readFileSync(join(repo, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    const copies = list.filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from"));
    assert.ok(copies.length >= 8);
    for (const copy of copies) {
      const paths = copy.args.split(/\s+/);
      for (const source of paths.slice(0, -1)) {
        assert.ok(existsSync(join(repo, source)), `COPY ${source} (stage ${copy.stage}) does not exist`);
        assert.ok(
          !ignored.includes(source.split("/")[0] as string),
          `COPY ${source} is excluded by .dockerignore`,
        );
      }
    }
    for (const excluded of ["node_modules", "dist", ".git"]) assert.ok(ignored.includes(excluded));
  });

  it("starts through tini with commands the CLI really has; the health check calls a route the API serves", () => {
    const usage = spawnSync(process.execPath, ["bin/trapdoor.js", "--help"], { cwd: repo, encoding: "utf8" });
    const commands = new Set([...usage.stdout.matchAll(/^ {2}(\w+)\s/gm)].map((m) => m[1]));
    for (const [stage, command] of [
      ["api", "serve"],
      ["worker", "worker"],
    ] as const) {
      const [entrypoint] = inStage(stage, "ENTRYPOINT");
      const [cmd] = inStage(stage, "CMD");
      assert.deepEqual(execForm(entrypoint?.args ?? "[]"), [
        "/usr/bin/tini",
        "--",
        "node",
        "bin/trapdoor.js",
      ]);
      const argv = execForm(cmd?.args ?? "[]");
      assert.deepEqual(argv, [command]);
      assert.ok(commands.has(command), `the CLI has no ${command} command (it lists ${[...commands]})`);
    }
    const [health] = inStage("api", "HEALTHCHECK");
    assert.match(health?.args ?? "", /\/healthz/);
    assert.match(readFileSync(join(repo, "src/api/server.ts"), "utf8"), /app\.get\("\/healthz"/);
  });

  it("keeps engines at Node >= 20 (our machines) while the images run Node 24", () => {
    const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { engines: { node: string } };
    assert.equal(pkg.engines.node, ">=20");
  });
});
