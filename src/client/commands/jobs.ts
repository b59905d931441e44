import { randomUUID } from "node:crypto";
import { integer, keyValues, parse, required } from "../args.ts";
import { CliError, ExitCode, usageError } from "../exit-codes.ts";
import { formatBytes, type Output, table } from "../output.ts";
import { JobProgressView, TransferProgress } from "../progress.ts";
import type { TrapdoorClient } from "../sdk.ts";
import { type Artifact, downloadVerified, JOB_ARTIFACTS, JOBS, type Job, LAUNCH, type Page } from "../sdk.ts";

export const JOBS_USAGE = `trapdoor jobs launch --method METHOD --train ID --holdout ID --test ID [options]
    --architecture NAME (wrn16-1)   --asr-test ID   --target N   --seed N   --gpu
    --hp KEY=VALUE ...              hyper-parameters (see the API's methods query)
    --attack NAME [--attack-param KEY=VALUE ...]   the attack that builds the ASR set (needs --target)
    --idempotency-key KEY           default: a fresh one per launch
    --watch                         follow the job until it ends, as jobs watch does
trapdoor jobs watch ID              live progress per stage, then ASR / CA / MSE
trapdoor jobs list [--status STATUS] [--first N]
trapdoor jobs download ID --format onnx|safetensors [-o FILE]   sha256-verified`;

export async function jobsCommand(api: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "launch") return launch(api, rest, out);
  if (sub === "watch") return watch(api, rest, out);
  if (sub === "list") return list(api, rest, out);
  if (sub === "download") return download(api, rest, out);
  throw usageError(`jobs needs launch, watch, list or download\n${JOBS_USAGE}`);
}

/** `trap-and-replace` and `TRAP_AND_REPLACE` name the same method. */
const methodName = (value: string) => value.toUpperCase().replace(/-/g, "_");

async function launch(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(argv, {
    method: { type: "string" },
    architecture: { type: "string" },
    train: { type: "string" },
    holdout: { type: "string" },
    test: { type: "string" },
    "asr-test": { type: "string" },
    target: { type: "string" },
    seed: { type: "string" },
    gpu: { type: "boolean" },
    hp: { type: "string", multiple: true },
    attack: { type: "string" },
    "attack-param": { type: "string", multiple: true },
    "idempotency-key": { type: "string" },
    watch: { type: "boolean" },
  });
  if (positionals.length > 0) throw usageError(`unexpected argument ${positionals[0]}`);
  const target = integer(values.target, "--target");
  const input: Record<string, unknown> = {
    method: methodName(required(values.method, "--method")),
    trainDatasetId: required(values.train, "--train"),
    holdoutDatasetId: required(values.holdout, "--holdout"),
    testDatasetId: required(values.test, "--test"),
    hyperparameters: keyValues(values.hp, "--hp"),
    idempotencyKey: values["idempotency-key"] ?? randomUUID(),
  };
  if (values.architecture) input.architecture = values.architecture;
  if (values["asr-test"]) input.asrTestDatasetId = values["asr-test"];
  if (target !== undefined) input.target = target;
  if (values.seed !== undefined) input.seed = integer(values.seed, "--seed");
  if (values.gpu) input.resources = { accelerator: "GPU" };
  if (values.attack) {
    if (target === undefined) throw usageError("--attack needs --target (the attack's target class)");
    input.attack = {
      name: values.attack,
      target,
      params: keyValues(values["attack-param"], "--attack-param"),
    };
  } else if (values["attack-param"]) throw usageError("--attack-param needs --attack");
  const api = connect();
  // Safe to resend: the idempotency key makes a retried launch return the same job.
  const { launchTraining: job } = await api.request<{ launchTraining: Job }>(
    LAUNCH,
    { input },
    { idempotent: true },
  );
  if (values.watch) {
    out.note(`launched job ${job.id}`);
    return follow(api, job.id, out);
  }
  out.result(
    job,
    () =>
      `launched job ${job.id} (${job.status}): ${job.method} on ${job.architecture}\nfollow it with: trapdoor jobs watch ${job.id}`,
  );
  return ExitCode.OK;
}

async function watch(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(argv, { "poll-seconds": { type: "string" } });
  const id = positionals[0];
  if (!id || positionals.length > 1) throw usageError("jobs watch takes one job ID");
  return follow(connect(), id, out, (integer(values["poll-seconds"], "--poll-seconds") ?? 2) * 1000);
}

const percent = (v: number) => `${(v * 100).toFixed(2)} %`;
const METRIC_ROWS: [keyof NonNullable<Job["metrics"]>, string, (v: number) => string][] = [
  ["asr", "ASR", percent],
  ["ca", "CA", percent],
  ["mse", "MSE", (v) => v.toFixed(5)],
  ["stage1Asr", "stage-1 ASR", percent],
  ["stage1Ca", "stage-1 CA", percent],
];

export function metricsTable(job: Job): string {
  const rows = METRIC_ROWS.flatMap(([key, label, format]) => {
    const value = job.metrics?.[key];
    return value == null ? [] : [[label, format(value)]];
  });
  return rows.length > 0 ? table(["METRIC", "VALUE"], rows) : "no metrics reported";
}

/** Follows a job to its end; the exit code says how it ended. */
async function follow(api: TrapdoorClient, id: string, out: Output, pollMs = 2000): Promise<number> {
  const view = new JobProgressView((text) => out.note(text));
  let job: Job;
  try {
    job = await api.waitForJob(
      id,
      (update) => {
        view.update(update);
        if (out.json) out.line(update);
      },
      { pollMs, onFallback: (reason) => out.note(`live updates unavailable (${reason}); polling instead`) },
    );
  } finally {
    view.finish();
  }
  if (!out.json)
    out.result(
      job,
      () =>
        `job ${job.id} ${job.status} (${job.method}, ${job.architecture}, attempt ${job.attempt})\n${metricsTable(job)}`,
    );
  if (job.status === "SUCCEEDED") return ExitCode.OK;
  const reason = job.error ? `: ${job.error.code}: ${job.error.message}` : "";
  throw new CliError(ExitCode.JOB_FAILED, `job ${job.id} ended ${job.status}${reason}`, job.error?.code);
}

async function list(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values } = parse(argv, { status: { type: "string" }, first: { type: "string" } });
  const first = integer(values.first, "--first") ?? 20;
  const api = connect();
  const { jobs } = await api.request<{ jobs: Page<Job> }>(
    JOBS,
    { first, status: values.status?.toUpperCase() },
    { idempotent: true },
  );
  const all = jobs.edges.map((e) => e.node);
  const pct = (v: number | null | undefined) => (v == null ? "" : percent(v));
  out.result(all, () =>
    all.length === 0
      ? "no jobs"
      : table(
          ["ID", "METHOD", "STATUS", "PROGRESS", "ASR", "CA", "CREATED"],
          all.map((j) => [
            j.id,
            j.method,
            j.status,
            j.progress && j.status === "RUNNING"
              ? `${j.progress.stage ?? ""} ${pct(j.progress.fraction)}`
              : "",
            pct(j.metrics?.asr),
            pct(j.metrics?.ca),
            j.createdAt.slice(0, 19).replace("T", " "),
          ]),
        ),
  );
  return ExitCode.OK;
}

const EXTENSIONS: Record<string, string> = { onnx: "onnx", safetensors: "safetensors", tar: "tar" };

async function download(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: "string" },
    output: { type: "string", short: "o" },
  });
  const id = positionals[0];
  if (!id || positionals.length > 1) throw usageError("jobs download takes one job ID");
  const format = (values.format ?? "onnx").toLowerCase();
  if (!EXTENSIONS[format])
    throw usageError(
      `--format must be onnx, safetensors or tar (the model-card bundle), not ${values.format}`,
    );
  const api = connect();
  const { job } = await api.request<{ job: { id: string; status: string; artifacts: Artifact[] } | null }>(
    JOB_ARTIFACTS,
    { id, expires: 900 },
    { idempotent: true },
  );
  if (!job) throw new CliError(ExitCode.API, `job ${id} does not exist`, "NOT_FOUND");
  const artifact = job.artifacts.find((a) => a.format === format);
  if (!artifact)
    throw new CliError(
      ExitCode.API,
      `job ${id} is ${job.status} and has no ${format} artifact${job.status === "SUCCEEDED" ? "" : " yet"}`,
      "FAILED_PRECONDITION",
    );
  const file = values.output ?? `${job.id}.${EXTENSIONS[format]}`;
  const progress = new TransferProgress(`download ${file}`, artifact.sizeBytes);
  let stored: { sizeBytes: number; sha256: string };
  try {
    stored = await downloadVerified(artifact.downloadUrl, file, artifact, (n) => progress.add(n));
  } catch (error) {
    progress.fail();
    throw error;
  }
  progress.finish();
  out.result(
    { file, format, kind: artifact.kind, sizeBytes: stored.sizeBytes, sha256: stored.sha256, verified: true },
    () => `wrote ${file} (${formatBytes(stored.sizeBytes)}, sha256 ${stored.sha256} verified)`,
  );
  return ExitCode.OK;
}
