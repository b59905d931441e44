import { DATASETS_USAGE, datasetsCommand } from "./commands/datasets.ts";
import { JOBS_USAGE, jobsCommand } from "./commands/jobs.ts";
import { LOGIN_USAGE, loginCommand } from "./commands/login.ts";
import { STUDIES_USAGE, studiesCommand } from "./commands/studies.ts";
import { loadCredentials } from "./config.ts";
import { EXIT_CODES_HELP, ExitCode } from "./exit-codes.ts";
import { Output } from "./output.ts";
import { TrapdoorClient } from "./sdk.ts";

export const CLIENT_USAGE = `${LOGIN_USAGE}
${DATASETS_USAGE}
${JOBS_USAGE}
${STUDIES_USAGE}
  every client command takes --json (results as JSON on stdout, errors as JSON on stderr)
  config: $XDG_CONFIG_HOME/trapdoor/config.json or ~/.config/trapdoor/config.json (mode 0600);
  TRAPDOOR_ENDPOINT and TRAPDOOR_KEY override it
  ${EXIT_CODES_HELP}`;

/** Runs one client command; returns its exit code (errors are reported here, never thrown). */
export async function runClient(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = new Output(argv.includes("--json"));
  const [command, ...rest] = argv;
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${CLIENT_USAGE}\n`);
    return ExitCode.OK;
  }
  // Credentials are read only by commands that call the API, and only when they do.
  const api = () => new TrapdoorClient(loadCredentials(env));
  try {
    if (command === "login") return await loginCommand(rest, out, env);
    if (command === "datasets") return await datasetsCommand(api, rest, out);
    if (command === "jobs") return await jobsCommand(api, rest, out);
    if (command === "studies") return await studiesCommand(api, rest, out);
    return out.error(new Error(`unknown client command ${command}`));
  } catch (error) {
    return out.error(error);
  }
}
