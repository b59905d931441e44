import { CliError, EXIT_CODE_OF, ExitCode } from "./exit-codes.ts";
import { TrapdoorError } from "./sdk.ts";

/**
 * Where a command's results go. With --json, stdout carries only JSON (one document, or one
 * object per line for streams) and errors are JSON on stderr; otherwise text for people.
 * Progress never goes to stdout.
 */
export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** The command's result: `value` as JSON, or the text `human` renders. */
  result(value: unknown, human: () => string): void {
    this.stdout.write(this.json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
  }

  /** One line of a stream (e.g. each job update of `jobs watch --json`). */
  line(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A note for people (stderr, so it never mixes with results); silent with --json. */
  note(text: string): void {
    if (!this.json) this.stderr.write(`${text}\n`);
  }

  error(error: unknown): ExitCode {
    const known =
      error instanceof CliError
        ? error
        : error instanceof TrapdoorError
          ? new CliError(EXIT_CODE_OF[error.kind], error.message, error.code, error.field)
          : new CliError(ExitCode.API, error instanceof Error ? error.message : String(error));
    if (this.json) {
      const { exitCode, apiCode, field } = known;
      this.stderr.write(
        `${JSON.stringify({ error: { message: known.message, exitCode, code: apiCode, field } })}\n`,
      );
    } else {
      this.stderr.write(`trapdoor: ${known.message}\n`);
    }
    return known.exitCode;
  }
}

/** A plain-text table: columns padded to their widest cell, numbers right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^[-\d.,% ]*$/.test(r[i] ?? "")),
  );
  const format = (cells: string[]) =>
    cells
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [format(headers), format(widths.map((w) => "-".repeat(w))), ...rows.map(format)].join("\n");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
