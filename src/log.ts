/**
 * The processes' log: one line per event on stdout. TRAPDOOR_LOG_FORMAT=json (every deployment)
 * writes JSON objects (`time`, `level`, `msg` and fields such as `requestId` or `jobId`) for a log
 * pipeline; the default `text` writes the message and `key=value` fields for a terminal.
 */
export type LogFormat = "text" | "json";
export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly format: LogFormat;
  info(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export function createLogger(
  format: LogFormat,
  write: (line: string) => void = (l) => process.stdout.write(l),
): Logger {
  const emit = (level: string, msg: string, fields: LogFields = {}) => {
    if (format === "json") {
      write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
      return;
    }
    const extra = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join("");
    write(`${level === "info" ? "" : `${level}: `}${msg}${extra}\n`);
  };
  return {
    format,
    info: (msg, fields) => emit("info", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
  };
}
