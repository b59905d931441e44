/**
 * Every size limit on what a caller sends, in one place, and the checks every boundary uses (the
 * GraphQL services, the CLI, the ingest workers). A request over a limit is refused with
 * BAD_USER_INPUT naming the field before anything is stored; SECURITY.md lists the values.
 */
import { badInput, notFound } from "./errors.ts";

export const INPUT_LIMITS = {
  /** Dataset names (uploads and poisoned copies). */
  datasetNameChars: 200,
  /** API key names. */
  apiKeyNameChars: 100,
  /** Tenant names (`trapdoor tenant NAME`). */
  tenantNameChars: 100,
  /** One class name, and how many a dataset may name (ImageNet-21k fits; the body limit caps the rest). */
  classNameChars: 100,
  classNames: 25_000,
  idempotencyKeyChars: 200,
  /** Identifiers matched against the catalog (method, architecture, attack, metric names). */
  identifierChars: 100,
  /** hyperparameters and attack params, serialised. */
  jsonBytes: 16 * 1024,
  /** Cursors the API returned are ~80 characters. */
  cursorChars: 512,
  /** A job's labels (string → string), as Kubernetes bounds its own. */
  labels: 32,
  labelKeyChars: 63,
  labelValueChars: 256,
  /** A platform's own id for a job. */
  externalIdChars: 256,
} as const;

/** A string of 1..max characters (after trimming it must not be empty). */
export function checkString(value: string, field: string, max: number): string {
  if (typeof value !== "string" || !value.trim() || value.length > max)
    throw badInput(`${field} must be 1 to ${max} characters`, field);
  return value;
}

/** An optional string: null/undefined pass, anything else as checkString. */
export function checkOptionalString(value: string | null | undefined, field: string, max: number) {
  return value == null ? value : checkString(value, field, max);
}

/** A list of at most `max` strings, each 1..maxChars characters. */
export function checkStringList(
  values: readonly string[] | null | undefined,
  field: string,
  max: number,
  maxChars: number,
): void {
  if (values == null) return;
  if (values.length > max) throw badInput(`${field} may hold at most ${max} entries`, field);
  values.forEach((v, i) => {
    checkString(v, `${field}[${i}]`, maxChars);
  });
}

/** A JSON value whose serialisation is at most `maxBytes` UTF-8 bytes. */
export function checkJsonSize(
  value: unknown,
  field: string,
  maxBytes: number = INPUT_LIMITS.jsonBytes,
): void {
  if (value == null) return;
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
  if (bytes > maxBytes) throw badInput(`${field} is ${bytes} bytes as JSON; the limit is ${maxBytes}`, field);
}

const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/;

/**
 * Labels: a JSON object of at most INPUT_LIMITS.labels string values, keys of letters, digits and
 * `.`, `_`, `/`, `-` (starting and ending with a letter or digit). Returns it, or {} for null.
 */
export function checkLabels(value: unknown, field: string): Record<string, string> {
  if (value == null) return {};
  if (typeof value !== "object" || Array.isArray(value))
    throw badInput(`${field} must be an object of string values, e.g. {"team": "vision"}`, field);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > INPUT_LIMITS.labels)
    throw badInput(`${field} may hold at most ${INPUT_LIMITS.labels} labels`, field);
  for (const [key, label] of entries) {
    if (key.length > INPUT_LIMITS.labelKeyChars || !LABEL_KEY.test(key))
      throw badInput(
        `${field}: the key ${JSON.stringify(key.slice(0, 80))} must be 1 to ${INPUT_LIMITS.labelKeyChars} letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit`,
        `${field}.${key.slice(0, 80)}`,
      );
    if (typeof label !== "string" || label.length > INPUT_LIMITS.labelValueChars)
      throw badInput(
        `${field}.${key} must be a string of at most ${INPUT_LIMITS.labelValueChars} characters`,
        `${field}.${key}`,
      );
  }
  return value as Record<string, string>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (id: string): boolean => typeof id === "string" && UUID.test(id);

/**
 * The one parser of object IDs: every ID the API hands out is a UUID, so anything else names
 * nothing and is NOT_FOUND (never a database error). The id is echoed only when short.
 */
export function parseId(what: string, id: string): string {
  if (!isUuid(id)) throw notFound(what, id);
  return id.toLowerCase();
}

/** What a canonical dataset of this shape takes decoded (uint8 images; int64 labels). */
export function decodedBytes(shape: { count: number; height: number; width: number; channels: number }) {
  return shape.count * shape.height * shape.width * shape.channels + shape.count * 8;
}

/** Lifetime of a signed download URL a caller asks for: 1 s to 7 days. */
export function checkExpiresIn(expiresInSeconds: number): number {
  if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > 7 * 24 * 3600)
    throw badInput("expiresInSeconds must be between 1 and 604800", "expiresInSeconds");
  return expiresInSeconds;
}
