import { statSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { assignParts, integer, parse } from "../args.ts";
import { configDir } from "../config.ts";
import { CliError, ExitCode, usageError } from "../exit-codes.ts";
import { formatBytes, type Output, table } from "../output.ts";
import { StatusLine, TransferProgress } from "../progress.ts";
import {
  DATASETS,
  type Dataset,
  describeFile,
  type LocalPart,
  type Page,
  type Schema,
  type TrapdoorClient,
  TrapdoorError,
} from "../sdk.ts";

export const DATASETS_USAGE = `trapdoor datasets upload FILE... --role ROLE --format FORMAT [--name NAME] [options]
    FILE: one file (NPZ and the archive formats), or two (NPY_PAIR, IDX: images and labels,
    told apart by name or order); name them explicitly as PART=FILE. Resumable: run the same
    command again after an interruption and the parts already stored are skipped.
    --role TRAIN|HOLDOUT|TEST|ASR_TEST   --format NPZ|NPY_PAIR|IDX|...
    --class-names a,b,c   --split TRAIN|TEST   --resize WxH   --channels 1|3   --crop-to-roi
    --no-wait             return once uploaded, without waiting for validation
trapdoor datasets list [--role ROLE]`;

export async function datasetsCommand(
  api: () => TrapdoorClient,
  argv: string[],
  out: Output,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "upload") return upload(api, rest, out);
  if (sub === "list") return list(api, rest, out);
  throw usageError(`datasets needs upload or list\n${DATASETS_USAGE}`);
}

function describe(d: Dataset): string {
  const shape =
    d.count != null ? `${d.count} images ${d.height}x${d.width}x${d.channels}, ${d.numClasses} classes` : "";
  const reason = d.failureReason ? `: ${d.failureReason}` : "";
  return `dataset ${d.id} "${d.name}" ${d.role} ${d.status}${shape ? ` (${shape})` : ""}${reason}`;
}

async function list(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values } = parse(argv, { role: { type: "string" } });
  const api = connect();
  const all: Dataset[] = [];
  let after: string | null = null;
  do {
    const page: { datasets: Page<Dataset> } = await api.request(
      DATASETS,
      { first: 100, after, role: values.role?.toUpperCase() },
      { idempotent: true },
    );
    all.push(...page.datasets.edges.map((e) => e.node));
    after = page.datasets.pageInfo.hasNextPage ? page.datasets.pageInfo.endCursor : null;
  } while (after);
  out.result(all, () =>
    all.length === 0
      ? "no datasets"
      : table(
          ["ID", "NAME", "ROLE", "FORMAT", "STATUS", "IMAGES", "SHAPE", "SIZE", "CREATED"],
          all.map((d) => [
            d.id,
            d.name,
            d.role,
            d.format,
            d.status,
            d.count == null ? "" : String(d.count),
            d.height == null ? "" : `${d.height}x${d.width}x${d.channels}`,
            formatBytes(d.sizeBytes),
            d.createdAt.slice(0, 19).replace("T", " "),
          ]),
        ),
  );
  return ExitCode.OK;
}

/** The archive formats' decoding options, from flags; undefined when none is given. */
function ingestOptions(values: {
  split?: string;
  resize?: string;
  channels?: string;
  "crop-to-roi"?: boolean;
}): Record<string, unknown> | undefined {
  const options: Record<string, unknown> = {};
  if (values.split) options.split = values.split.toUpperCase();
  if (values.resize) {
    const match = /^(\d+)x(\d+)$/i.exec(values.resize);
    if (!match) throw usageError(`--resize takes WIDTHxHEIGHT, e.g. 32x32, got ${values.resize}`);
    options.resize = { width: Number(match[1]), height: Number(match[2]) };
  }
  if (values.channels) options.channels = integer(values.channels, "--channels");
  if (values["crop-to-roi"]) options.cropToRoi = true;
  return Object.keys(options).length > 0 ? options : undefined;
}

function defaultName(parts: { path: string }[]): string {
  const first = parts[0]?.path as string;
  if (parts.length > 1) return basename(dirname(resolve(first)));
  let name = basename(first);
  while (extname(name)) name = name.slice(0, -extname(name).length);
  return name || basename(first);
}

async function upload(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(argv, {
    role: { type: "string" },
    format: { type: "string" },
    name: { type: "string" },
    "class-names": { type: "string" },
    split: { type: "string" },
    resize: { type: "string" },
    channels: { type: "string" },
    "crop-to-roi": { type: "boolean" },
    "no-wait": { type: "boolean" },
  });
  if (!values.role) throw usageError("--role is required (TRAIN, HOLDOUT, TEST or ASR_TEST)");
  if (!values.format) throw usageError("--format is required (NPZ, NPY_PAIR, IDX, ...)");
  const assigned = assignParts(positionals);
  const api = connect();
  const parts: LocalPart[] = [];
  for (const { part, path } of assigned) {
    const progress = new TransferProgress(`hash   ${basename(path)}`, sizeOf(path));
    parts.push({ part, path, ...(await describeFile(path, (n) => progress.add(n)).catch(asUsage)) });
    progress.finish();
  }
  const input: Parameters<TrapdoorClient["uploadDataset"]>[0] = {
    name: values.name ?? defaultName(assigned),
    role: values.role.toUpperCase() as Schema.DatasetRole,
    format: values.format.toUpperCase() as Schema.DatasetFormat,
  };
  if (values["class-names"]) input.classNames = values["class-names"].split(",").map((c) => c.trim());
  const options = ingestOptions(values);
  if (options) input.options = options;

  let progress: TransferProgress | undefined;
  let dataset: Dataset;
  try {
    dataset = await api.uploadDataset(input, parts, {
      stateDir: join(configDir(), "uploads"),
      onNote: (text) => out.note(text),
      onPart: (file) => {
        progress?.finish();
        progress = new TransferProgress(`upload ${basename(file.path)}`, file.sizeBytes);
      },
      onBytes: (_part, n) => progress?.add(n),
    });
    progress?.finish();
  } catch (error) {
    progress?.fail();
    if (error instanceof TrapdoorError && error.kind === "network")
      throw new TrapdoorError(
        "network",
        `${error.message}\nrun the same command again to resume (parts already stored are skipped)`,
      );
    throw error;
  }
  if (!values["no-wait"]) dataset = await settled(api, dataset);
  out.result(dataset, () => describe(dataset));
  if (dataset.status === "FAILED")
    throw new CliError(
      ExitCode.API,
      `dataset ${dataset.id} failed validation: ${dataset.failureReason ?? "no reason given"}`,
    );
  return ExitCode.OK;
}

/** A local file that cannot be read is a usage error of the command line. */
function asUsage(error: unknown): never {
  if (error instanceof TrapdoorError && error.kind === "local") throw usageError(error.message);
  throw error;
}

/** For the progress bar only; describeFile reports a missing file properly. */
function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Polls until ingest has decided (READY or FAILED), with a status line. */
async function settled(api: TrapdoorClient, dataset: Dataset): Promise<Dataset> {
  if (dataset.status !== "VALIDATING" && dataset.status !== "AWAITING_UPLOAD") return dataset;
  const line = new StatusLine();
  const started = Date.now();
  try {
    return await api.waitForDataset(dataset.id, (current) =>
      line.draw(`validating dataset ${current.id} (${Math.round((Date.now() - started) / 1000)} s)`, true),
    );
  } finally {
    line.clear();
  }
}
