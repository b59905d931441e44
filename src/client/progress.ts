import { formatBytes } from "./output.ts";
import type { Job, JobProgress } from "./sdk.ts";

/** `[#####-----]` for a fraction in [0, 1]. */
export function bar(fraction: number, width = 24): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.round(clamped * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

/**
 * One redrawable status line on a terminal (stderr). Does nothing when stderr is not a TTY, so
 * pipes and log files get no control characters. Redraws are throttled.
 */
export class StatusLine {
  private lastDraw = 0;
  private lastText = "";
  private shown = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly minIntervalMs = 100,
  ) {}

  get enabled(): boolean {
    return Boolean(this.stream.isTTY);
  }

  draw(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && (now - this.lastDraw < this.minIntervalMs || (this.shown && text === this.lastText)))
      return;
    this.lastDraw = now;
    this.lastText = text;
    const width = this.stream.columns || 100;
    this.stream.write(`\r\x1b[2K${text.slice(0, Math.max(10, width - 1))}`);
    this.shown = true;
  }

  /** Leave the current line as it is and move to a new one. */
  commit(text?: string): void {
    if (!this.enabled) return;
    if (text !== undefined) this.draw(text, true);
    if (this.shown) this.stream.write("\n");
    this.shown = false;
  }

  clear(): void {
    if (this.enabled && this.shown) this.stream.write("\r\x1b[2K");
    this.shown = false;
  }
}

/** A byte-transfer bar: `upload images.npy [#####-----] 52%  3.1 MiB / 6.0 MiB`. */
export class TransferProgress {
  private done = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly line = new StatusLine(),
  ) {}

  add(bytes: number): void {
    this.done += bytes;
    this.render(false);
  }

  finish(): void {
    this.render(true);
    this.line.commit();
  }

  fail(): void {
    this.line.commit();
  }

  private render(force: boolean): void {
    const fraction = this.total > 0 ? this.done / this.total : 1;
    this.line.draw(
      `${this.label} ${bar(fraction)} ${(fraction * 100).toFixed(0).padStart(3)}%  ${formatBytes(this.done)} / ${formatBytes(this.total)}`,
      force,
    );
  }
}

function stageText(progress: JobProgress): string {
  const epoch =
    progress.epoch != null && progress.epochs != null
      ? `  epoch ${Math.min(progress.epoch + 1, progress.epochs)}/${progress.epochs}`
      : "";
  const rate = progress.imagesPerSecond ? `  ${Math.round(progress.imagesPerSecond)} img/s` : "";
  const percent = `${(progress.fraction * 100).toFixed(0).padStart(3)}%`;
  return `  ${(progress.stage ?? "training").padEnd(8)} ${bar(progress.fraction)} ${percent}${epoch}${rate}`;
}

/**
 * A job as it runs, on stderr: one line per status, and per training stage a progress bar that
 * is redrawn in place on a terminal (kept when the next stage starts). Without a terminal, plain
 * lines at each status, stage and epoch, for logs.
 */
export class JobProgressView {
  private status: string | undefined;
  private stage: string | undefined;
  private epoch: number | null | undefined;
  private lastProgress: JobProgress | undefined;

  constructor(
    private readonly notes: (text: string) => void,
    private readonly line = new StatusLine(),
  ) {}

  update(job: Job): void {
    const progress = job.progress;
    const training = job.status === "RUNNING" || job.status === "CANCELLING";
    if (training && progress && progress.stage !== this.stage) {
      this.commitStage();
      this.stage = progress.stage ?? undefined;
      this.epoch = undefined;
    }
    if (job.status !== this.status) {
      this.line.clear();
      if (this.status === "RUNNING") this.commitStage();
      this.status = job.status;
      this.notes(`job ${job.id} ${job.status}${job.attempt > 1 ? ` (attempt ${job.attempt})` : ""}`);
    }
    if (!training || !progress) return;
    this.lastProgress = progress;
    if (this.line.enabled) this.line.draw(stageText(progress));
    else if (progress.epoch !== this.epoch) {
      this.epoch = progress.epoch;
      this.notes(stageText(progress).trimStart());
    }
  }

  /** Keep the finished stage's bar on screen. */
  private commitStage(): void {
    if (this.lastProgress && this.line.enabled) this.line.commit(stageText(this.lastProgress));
    this.lastProgress = undefined;
  }

  finish(): void {
    this.line.clear();
  }
}
