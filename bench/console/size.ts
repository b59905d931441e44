/**
 * The web console's production bundle: builds it (Vite, as `npm run build` does) into a temporary
 * directory and prints each file's size raw and gzipped (level 9, what a server's gzip would send).
 *   node --import tsx bench/console/size.ts
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** Builds the console as `npm run build` does (Vite, console/vite.config.ts), into `out`. */
export function buildConsole(out: string): void {
  const vite = join(repo, "node_modules", "vite", "bin", "vite.js");
  execFileSync(
    process.execPath,
    [vite, "build", "--config", "console/vite.config.ts", "--logLevel", "warn"],
    {
      cwd: repo,
      env: { ...process.env, TRAPDOOR_CONSOLE_OUT: out },
    },
  );
}

/** Every file under `dir` with its raw and gzipped size in bytes. */
export function bundleSizes(dir: string): { file: string; raw: number; gzip: number }[] {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }))
      (e.isDirectory() ? walk : files.push.bind(files))(join(d, e.name));
  };
  walk(dir);
  return files.sort().map((file) => {
    const bytes = readFileSync(file);
    return { file: relative(dir, file), raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = mkdtempSync(join(tmpdir(), "trapdoor-console-size-"));
  try {
    const started = performance.now();
    buildConsole(out);
    const seconds = (performance.now() - started) / 1000;
    const sizes = bundleSizes(out);
    for (const s of sizes)
      console.log(
        `${s.file.padEnd(40)} ${(s.raw / 1000).toFixed(1).padStart(8)} KB  ${(s.gzip / 1000).toFixed(1).padStart(7)} KB gzip`,
      );
    const total = sizes.reduce((a, s) => ({ raw: a.raw + s.raw, gzip: a.gzip + s.gzip }), {
      raw: 0,
      gzip: 0,
    });
    console.log(
      `${"total".padEnd(40)} ${(total.raw / 1000).toFixed(1).padStart(8)} KB  ${(total.gzip / 1000).toFixed(1).padStart(7)} KB gzip  (built in ${seconds.toFixed(1)} s)`,
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
