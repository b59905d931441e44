/**
 * Where the project's files are, whether this code runs from `src/` (through tsx) or compiled
 * from `dist/src/`: the first directory above this module that holds package.json.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findProjectRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const PROJECT_ROOT = findProjectRoot(dirname(fileURLToPath(import.meta.url)));

/** A path under the project root, e.g. `projectPath("schema", "catalog.json")`. */
export const projectPath = (...parts: string[]): string => join(PROJECT_ROOT, ...parts);
