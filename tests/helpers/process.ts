import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildConsole } from "../../bench/console/size.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/**
 * `<root>/app` with `dist/` built from this checkout as `npm run build` builds it (tsc, and Vite
 * for the web console in dist/console); returns it.
 */
export function compiledApp(root: string): string {
  const app = join(root, "app");
  mkdirSync(app);
  execFileSync(
    join(repo, "node_modules/.bin/tsc"),
    ["-p", "tsconfig.build.json", "--outDir", join(app, "dist")],
    {
      cwd: repo,
    },
  );
  buildConsole(join(app, "dist", "console"));
  return app;
}

/**
 * `node bin/trapdoor.js ARGS` in `cwd` as a child process; resolves once `ready` matches its
 * output (stdout and stderr), rejects if it exits first (with what it printed).
 */
export function startTrapdoor(
  cwd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  node = process.execPath,
) {
  const child = spawn(node, ["bin/trapdoor.js", ...args], { cwd, env });
  let output = "";
  return new Promise<ChildProcess>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (ready.test(output)) resolve(child);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code, signal) =>
      reject(new Error(`trapdoor ${args[0]} exited (${code ?? signal}): ${output}`)),
    );
  });
}

/** Sends `signal`; resolves with the exit code, or the signal's name when it killed the process. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<number | string | null> {
  const exited = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, s) => resolve(code ?? s)),
  );
  child.kill(signal);
  return exited;
}
