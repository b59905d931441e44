import { integer, parse } from "../args.ts";
import { CliError, ExitCode, usageError } from "../exit-codes.ts";
import { type Output, table } from "../output.ts";
import type { TrapdoorClient } from "../sdk.ts";
import { STUDY, type Study } from "../sdk.ts";

export const STUDIES_USAGE = `trapdoor studies watch ID [--poll-seconds N]   the study's table (method, seed, status, ASR, CA,
    runtime, health verdict) as its jobs run, until every job has ended`;

export async function studiesCommand(
  api: () => TrapdoorClient,
  argv: string[],
  out: Output,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "watch") return watch(api, rest, out);
  throw usageError(`studies needs watch\n${STUDIES_USAGE}`);
}

const percent = (v: number | null) => (v === null ? "-" : `${(v * 100).toFixed(2)} %`);

export function studyTable(study: Study): string {
  const rows = study.table.map((r) => [
    r.method,
    String(r.seed),
    r.status,
    percent(r.asr),
    percent(r.ca),
    r.runtimeSeconds === null ? "-" : `${r.runtimeSeconds.toFixed(0)} s`,
    r.healthVerdict ?? "-",
  ]);
  return `study ${study.id}: ${study.status}\n${table(["METHOD", "SEED", "STATUS", "ASR", "CA", "RUNTIME", "HEALTH"], rows)}`;
}

/** Polls the study, printing its table whenever it changes; the exit code says how it ended. */
async function watch(connect: () => TrapdoorClient, argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(argv, { "poll-seconds": { type: "string" } });
  const id = positionals[0];
  if (!id || positionals.length > 1) throw usageError("studies watch takes one study ID");
  const everyMs = (integer(values["poll-seconds"], "--poll-seconds") ?? 2) * 1000;
  const api = connect();
  let shown = "";
  for (;;) {
    const { study } = await api.request<{ study: Study | null }>(STUDY, { id });
    if (!study) throw new CliError(ExitCode.API, `study ${id} does not exist`, "NOT_FOUND");
    const text = studyTable(study);
    if (text !== shown) {
      shown = text;
      if (out.json) out.line(study);
      else if (study.status === "RUNNING") out.note(text);
    }
    if (study.status !== "RUNNING") {
      if (!out.json) out.result(study, () => text);
      return study.status === "SUCCEEDED" ? ExitCode.OK : ExitCode.JOB_FAILED;
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
