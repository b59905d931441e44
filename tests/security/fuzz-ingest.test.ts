/**
 * Property-based abuse of every ingest parser: each case is a well-formed upload of the format,
 * lied about and mangled (fuzz-inputs.ts). Whatever the bytes, ingest must end in a dataset or
 * a typed IngestError, leave nothing behind on failure, finish within a per-case timeout, and
 * the whole run of one parser must not grow the process's RSS by more than 64 MiB.
 *
 * Seeds are fixed (and named in each test) so that a failure replays: fast-check prints the
 * seed and the counterexample's path; pass them back as `{ seed, path }` to reproduce it.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { openArchive } from "../../src/datasets/archive/index.ts";
import { warmDecodePool } from "../../src/datasets/images/decode-pool.ts";
import { IngestError, ingest } from "../../src/datasets/ingest.ts";
import type { DatasetFormat } from "../../src/datasets/types.ts";
import { tarBytes } from "../datasets/archives.ts";
import { ingestFails, zipBytes } from "../datasets/helpers.ts";
import {
  type ArchiveKind,
  cifarArb,
  classFoldersArb,
  gtsrbArb,
  idxPairArb,
  npyPairArb,
  npzArb,
  type RecordCase,
  type WalkCase,
  walkCaseArb,
} from "./fuzz-inputs.ts";

const RUNS = 200;
const CASE_TIMEOUT_MS = 10_000;
const RSS_BUDGET = 64 * 1024 * 1024;
/** Small enough that a lying header trips the limits rather than the disk. */
const LIMITS = { maxBytes: 64 << 20, maxCompressionRatio: 100 };

const root = mkdtempSync(join(tmpdir(), "trapdoor-fuzz-ingest-"));
after(() => rmSync(root, { recursive: true, force: true }));
let caseNumber = 0;

/** A fresh directory for one case, removed when the case ends. */
async function inCaseDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(root, String(caseNumber++));
  mkdirSync(dir);
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** "ok" or the IngestError's code; anything else thrown is a bug and fails the property. */
async function ingestOutcome(
  format: DatasetFormat,
  parts: Record<string, Uint8Array>,
  extra: { options?: unknown; classNames?: unknown; numClasses?: number } = {},
): Promise<string> {
  return inCaseDir(async (dir) => {
    const paths: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(parts)) {
      paths[name] = join(dir, `${name}.bin`);
      writeFileSync(paths[name], bytes);
    }
    const parent = join(dir, "result");
    mkdirSync(parent);
    const out = join(parent, "out");
    try {
      const manifest = await ingest(
        {
          format,
          parts: paths,
          ...LIMITS,
          options: extra.options,
          classNames: extra.classNames as string[] | undefined,
          numClasses: extra.numClasses,
        },
        out,
      );
      assert.ok(manifest.count > 0, "a dataset holds images");
      assert.deepEqual(readdirSync(out).sort(), ["images.npy", "labels.npy", "manifest.json"]);
      return "ok";
    } catch (e) {
      if (!(e instanceof IngestError)) throw e;
      assert.ok(e.code.length > 0 && e.message.length > 0);
      assert.deepEqual(readdirSync(parent), [], `${e.code} left files behind`);
      return e.code;
    }
  });
}

/** Every member the walker yields has a safe name; reading it ends in bytes or an IngestError. */
async function walkOutcome(c: WalkCase): Promise<string> {
  return inCaseDir(async (dir) => {
    const path = join(dir, `upload.${c.kind}`);
    writeFileSync(path, c.bytes);
    try {
      const archive = await openArchive(path, LIMITS);
      let i = 0;
      for await (const member of archive.members()) {
        assert.ok(member.parts.length > 0 || member.isDirectory, `member ${member.path} has a name`);
        for (const part of member.parts) {
          assert.ok(part !== ".." && part !== "." && part !== "" && !part.includes("/"), member.path);
          assert.ok(!part.includes("\\") && !part.includes("\0"), member.path);
        }
        const how = c.reads[i++ % c.reads.length];
        if (how === 1) {
          const bytes = await member.read(1 << 20);
          assert.equal(bytes.length, member.size);
        } else if (how === 2) {
          for await (const _ of member.chunks()) {
            // drained: the walker checks the length and CRC at the end
          }
        }
      }
      return "ok";
    } catch (e) {
      if (!(e instanceof IngestError)) throw e;
      return e.code;
    }
  });
}

const rss = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
};

/**
 * Runs `numRuns` seeded cases through `outcome` after one warm-up case (first use of sharp,
 * yauzl, zlib) and with the image-decoding threads started (an ingest worker starts them once;
 * a warm-up case that fails before decoding would leave their start inside the measurement),
 * then checks the RSS growth and that the generator reached both outcomes.
 */
async function fuzz<T>(arb: fc.Arbitrary<T>, seed: number, outcome: (value: T) => Promise<string>) {
  await warmDecodePool();
  await outcome(fc.sample(arb, { seed, numRuns: 1 })[0] as T);
  const before = rss();
  const seen = new Map<string, number>();
  const property = fc.asyncProperty(arb, async (value) => {
    const result = await outcome(value);
    seen.set(result, (seen.get(result) ?? 0) + 1);
  });
  try {
    await fc.assert(property, { seed, numRuns: RUNS, timeout: CASE_TIMEOUT_MS, endOnFailure: true });
  } catch (e) {
    // The counterexample holds whole archives: keep the seed, path and cause, cut the bytes.
    const error = e as Error & { cause?: unknown };
    const cause =
      error.cause instanceof Error ? (error.cause.stack ?? error.cause.message) : String(error.cause);
    throw new Error(`${error.message.slice(0, 600)}\n...\ncause: ${cause}`);
  }
  if (process.env.FUZZ_STATS) console.log(JSON.stringify(Object.fromEntries(seen)));
  const grown = rss() - before;
  assert.ok(grown <= RSS_BUDGET, `RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB over ${RUNS} cases`);
  const total = [...seen.values()].reduce((a, b) => a + b, 0);
  assert.equal(total, RUNS);
  assert.ok(seen.size > 1, `every case ended the same way: ${[...seen.keys()].join(", ")}`);
  return seen;
}

/** A case name with its seed, so a failure names what to replay. */
const named = (what: string, seed: number) => `${what} (seed ${seed}, ${RUNS} cases)`;

const SEEDS = {
  npy: 0x5eed_0001,
  npz: 0x5eed_0002,
  idx: 0x5eed_0003,
  tar: 0x5eed_0004,
  tarGz: 0x5eed_0005,
  zip: 0x5eed_0006,
  cifar: 0x5eed_0007,
  gtsrb: 0x5eed_0008,
  classFolders: 0x5eed_0009,
};

const recordCase = (format: DatasetFormat) => (c: RecordCase) =>
  ingestOutcome(
    format,
    { archive: c.archive },
    c as { options?: unknown; classNames?: unknown; numClasses?: number },
  );

describe("ingest fuzzing: every outcome is a dataset or a typed IngestError", () => {
  it(named("NPY_PAIR", SEEDS.npy), async () => {
    await fuzz(npyPairArb, SEEDS.npy, (p) => ingestOutcome("NPY_PAIR", p));
  });

  it(named("NPZ", SEEDS.npz), async () => {
    await fuzz(npzArb, SEEDS.npz, (archive) => ingestOutcome("NPZ", { archive }));
  });

  it(named("IDX (raw and gzipped)", SEEDS.idx), async () => {
    await fuzz(idxPairArb, SEEDS.idx, (p) => ingestOutcome("IDX", p));
  });

  const walkers: Array<[ArchiveKind, number]> = [
    ["tar", SEEDS.tar],
    ["tar.gz", SEEDS.tarGz],
    ["zip", SEEDS.zip],
  ];
  for (const [kind, seed] of walkers) {
    it(named(`${kind} archive walker: header lies, links, unsafe names`, seed), async () => {
      await fuzz(walkCaseArb(kind), seed, walkOutcome);
    });
  }

  it(named("CIFAR10_BINARY", SEEDS.cifar), async () => {
    await fuzz(cifarArb, SEEDS.cifar, recordCase("CIFAR10_BINARY"));
  });

  it(named("GTSRB", SEEDS.gtsrb), async () => {
    await fuzz(gtsrbArb, SEEDS.gtsrb, recordCase("GTSRB"));
  });

  it(named("CLASS_FOLDERS", SEEDS.classFolders), async () => {
    await fuzz(classFoldersArb, SEEDS.classFolders, recordCase("CLASS_FOLDERS"));
  });

  it("the scratch directory is left empty", () => {
    assert.ok(existsSync(root));
    assert.deepEqual(readdirSync(root), []);
  });
});

describe("ingest fuzzing regressions (minimized counterexamples)", () => {
  it("a tar folder entry that declares data: BAD_ARCHIVE, not a walk that never ends", async () => {
    // tar-stream hands out a folder's entry without its data and never ends it.
    const archive = tarBytes([{ name: "cat/", type: "directory", data: Buffer.from("x") }]);
    const error = await ingestFails("CLASS_FOLDERS", { archive }, "BAD_ARCHIVE");
    assert.match(error.message, /folder "cat\/" declares 1 bytes/);
  });

  it("a file member named '.' (tar or zip): UNSAFE_PATH, not a TypeError", async () => {
    const tar = tarBytes([{ name: ".", data: Buffer.from("x") }]);
    await ingestFails("GTSRB", { archive: tar }, "UNSAFE_PATH");
    await ingestFails("CLASS_FOLDERS", { archive: tar }, "UNSAFE_PATH");
    const zip = zipBytes([{ name: ".", data: Buffer.from("x") }]);
    await ingestFails("GTSRB", { archive: zip }, "UNSAFE_PATH");
  });
});
