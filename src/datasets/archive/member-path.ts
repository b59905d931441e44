/**
 * Member names inside uploaded archives. Nothing is ever extracted to disk, but names become
 * class names and CSV keys, and a name that would escape a directory on extraction is a sign of
 * a hostile archive: such archives are refused whole (UNSAFE_PATH) rather than sanitised.
 */

import { IngestError } from "../ingest-error.ts";

/** Splits a member name into its components; UNSAFE_PATH for absolute, "..", backslash or NUL names. */
export function memberParts(name: string, label: string): string[] {
  const shown = JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name);
  const unsafe = (why: string) =>
    new IngestError(
      "UNSAFE_PATH",
      `${label}: member ${shown} ${why}; archives must hold plain relative member names`,
    );
  if (name.includes("\0")) throw unsafe("contains a NUL byte");
  if (name.includes("\\")) throw unsafe("contains a backslash");
  if (name.startsWith("/") || /^[a-zA-Z]:/.test(name)) throw unsafe("is an absolute path");
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw unsafe("climbs out of the archive with '..'");
  return parts;
}

/** UNSAFE_PATH for a file whose name has no components ("", "."): only a folder may name the root. */
export function checkFileParts(parts: readonly string[], name: string, label: string): void {
  if (parts.length === 0) {
    throw new IngestError(
      "UNSAFE_PATH",
      `${label}: member ${JSON.stringify(name)} is a file without a name; archives must hold plain relative member names`,
    );
  }
}

/**
 * Files that archivers and desktops add by themselves (macOS resource forks and .DS_Store,
 * Windows thumbnails, any hidden file): skipped silently, never treated as data.
 */
export function isClutter(parts: readonly string[]): boolean {
  if (parts[0] === "__MACOSX") return true;
  return parts.some((part) => part.startsWith(".") || part === "Thumbs.db" || part === "desktop.ini");
}
