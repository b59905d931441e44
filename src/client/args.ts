import { basename } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { usageError } from "./exit-codes.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Flags every client command takes. */
export const COMMON_OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

/** node:util parseArgs, strict, with its errors turned into usage errors (exit code 1). */
export function parse<T extends Options>(argv: string[], options: T) {
  try {
    return parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw usageError((error as Error).message);
  }
}

/**
 * `key=value` flags (e.g. `--hp stage1Epochs=2`) → an object. Values are JSON when they parse as
 * JSON (numbers, true/false, null, quoted strings, arrays), else plain strings.
 */
export function keyValues(pairs: string[] | undefined, flag: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw usageError(`${flag} takes key=value, got ${JSON.stringify(pair)}`);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a bare word is a string
    }
    out[pair.slice(0, eq)] = value;
  }
  return out;
}

export function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw usageError(`${flag} must be an integer, got ${JSON.stringify(value)}`);
  return n;
}

export function required(value: string | undefined, flag: string): string {
  if (!value) throw usageError(`${flag} is required`);
  return value;
}

const PART_NAME = /^[A-Za-z][\w-]*$/;

/**
 * Command-line files → parts. `images=a.npy labels=b.npy` names them; otherwise one file is the
 * format's only part, and two files are told apart by "image"/"label" in their names, else taken
 * in the order images, labels (the two-file formats' parts).
 */
export function assignParts(args: string[]): { part: string | null; path: string }[] {
  if (args.length === 0) throw usageError("datasets upload needs at least one FILE");
  const named = args.map((arg) => {
    const eq = arg.indexOf("=");
    return eq > 0 && PART_NAME.test(arg.slice(0, eq))
      ? { part: arg.slice(0, eq), path: arg.slice(eq + 1) }
      : null;
  });
  if (named.every((n) => n !== null)) return named as { part: string; path: string }[];
  if (named.some((n) => n !== null)) throw usageError("name every part (PART=FILE) or none");
  if (args.length === 1) return [{ part: null, path: args[0] as string }];
  if (args.length === 2) {
    const kind = (path: string) => {
      const name = basename(path).toLowerCase();
      return name.includes("label") ? "labels" : name.includes("image") ? "images" : null;
    };
    const [first, second] = args as [string, string];
    const guessed = [kind(first), kind(second)];
    if (guessed[0] === "labels" && guessed[1] !== "labels")
      return [
        { part: "labels", path: first },
        { part: "images", path: second },
      ];
    return [
      { part: "images", path: first },
      { part: "labels", path: second },
    ];
  }
  throw usageError("more than two files: name the parts, e.g. images=FILE labels=FILE");
}
