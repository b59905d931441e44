/**
 * The background half of `poisonDataset`: stage the clean source (and test set), run the trainer's
 * `poison` command, store the poisoned TRAIN set and its ASR_TEST set, or mark both FAILED.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type DatasetRow, setDatasetStatus } from "../db/datasets.ts";
import { runTrainerCommand } from "../trainer/process.ts";
import { IngestError } from "./ingest.ts";
import { stageCanonical } from "./staging.ts";
import { type DatasetProcessing, storeCanonical } from "./upload-ingest.ts";

/** What the poisoned datasets record of the attack that made them. */
export interface PoisonRecord {
  attack: string;
  target: number;
  ratio: number;
  seed: number;
  params: Record<string, unknown>;
}

export interface PoisonRun {
  source: DatasetRow;
  test: DatasetRow | null;
  /** The new datasets, created VALIDATING by the request. */
  poisoned: DatasetRow;
  asr: DatasetRow | null;
  record: PoisonRecord;
}

/** Build the poisoned datasets (VALIDATING → READY, or FAILED with the trainer's reason). */
export async function runPoison(deps: DatasetProcessing, run: PoisonRun): Promise<void> {
  const { source, test, poisoned, asr, record } = run;
  const dir = join(deps.scratchDir, `poison-${poisoned.id}-${poisoned.processing_attempt}`);
  try {
    const sourceDir = await stageCanonical(deps.store, source, join(dir, "source"));
    const testDir = test ? await stageCanonical(deps.store, test, join(dir, "test")) : null;
    const spec = {
      source: sourceDir,
      test: testDir,
      attack: { name: record.attack, target: record.target, params: record.params },
      ratio: record.ratio,
      seed: record.seed,
    };
    await writeFile(join(dir, "poison.json"), JSON.stringify(spec));
    const args = ["poison", "--spec", join(dir, "poison.json"), "--out", join(dir, "out")];
    if (asr) args.push("--asr-out", join(dir, "asr"));
    const result = await runTrainerCommand(args, deps.python);
    if (result.code !== 0) {
      const line = result.stderr.trim().split("\n").at(-1) ?? "";
      throw new IngestError("POISON_FAILED", line.slice(0, 1000));
    }
    for (const [row, out] of [
      [poisoned, "out"],
      [asr, "asr"],
    ] as [DatasetRow | null, string][]) {
      if (!row) continue;
      const manifest = JSON.parse(await readFile(join(dir, out, "manifest.json"), "utf8"));
      await storeCanonical(deps, row, join(dir, out), manifest);
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    for (const row of [poisoned, asr])
      if (row) await setDatasetStatus(deps.db, row.id, ["VALIDATING"], "FAILED", reason);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
