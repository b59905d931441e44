/**
 * The background half of `sanitizeDataset`: stage the source training set and the health
 * report's scores, run the trainer's `sanitize` command, store the result or mark it FAILED.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type DatasetRow, type DerivedFrom, setDatasetStatus } from "../db/datasets.ts";
import { runTrainerCommand, trainerRejection } from "../trainer/process.ts";
import { IngestError } from "./ingest.ts";
import { stageCanonical } from "./staging.ts";
import { type DatasetProcessing, storeCanonical } from "./upload-ingest.ts";

export async function runSanitize(
  deps: DatasetProcessing,
  source: DatasetRow,
  sanitized: DatasetRow,
): Promise<void> {
  const lineage = sanitized.derived_from as DerivedFrom;
  const dir = join(deps.scratchDir, `sanitize-${sanitized.id}-${sanitized.processing_attempt}`);
  try {
    const sourceDir = await stageCanonical(deps.store, source, join(dir, "source"));
    const scores = join(dir, "health_scores.npy");
    await deps.store.downloadToFile(lineage.scoresKey, scores);
    await writeFile(
      join(dir, "sanitize.json"),
      JSON.stringify({ source: sourceDir, scores, policy: lineage.policy }),
    );
    const result = await runTrainerCommand(
      ["sanitize", "--spec", join(dir, "sanitize.json"), "--out", join(dir, "out")],
      deps.python,
    );
    if (result.code !== 0) {
      const { field, message } = trainerRejection(result.stderr);
      throw new IngestError("SANITIZE_FAILED", (field ? `${field} ${message}` : message).slice(0, 1000));
    }
    const manifest = JSON.parse(await readFile(join(dir, "out", "manifest.json"), "utf8"));
    await storeCanonical(deps, sanitized, join(dir, "out"), manifest);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    await setDatasetStatus(deps.db, sanitized.id, ["VALIDATING"], "FAILED", reason);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
