import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { CliError, ExitCode, usageError } from "./exit-codes.ts";

/** Where the client keeps its endpoint and API key, and how to reach the API. */
export interface Credentials {
  /** The GraphQL URL, e.g. http://127.0.0.1:4000/graphql. */
  endpoint: string;
  key: string;
}

/** `$XDG_CONFIG_HOME/trapdoor` or `~/.config/trapdoor`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME?.trim() ? env.XDG_CONFIG_HOME : join(homedir(), ".config");
  return join(base, "trapdoor");
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(configDir(env), "config.json");
}

/**
 * A base URL or the GraphQL URL → the GraphQL URL. `http://host:4000` gets the API's `/graphql`
 * path; any other path is kept (an API behind a proxy prefix).
 */
export function normalizeEndpoint(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usageError(`--endpoint ${JSON.stringify(value)} is not a URL (e.g. http://127.0.0.1:4000/graphql)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw usageError(`--endpoint must be an http or https URL, not ${url.protocol}`);
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/graphql";
  url.hash = "";
  return url.toString();
}

function readConfigFile(path: string): Partial<Credentials> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw usageError(`cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<Credentials>;
    return {
      endpoint: typeof parsed.endpoint === "string" ? parsed.endpoint : undefined,
      key: typeof parsed.key === "string" ? parsed.key : undefined,
    };
  } catch {
    throw usageError(`${path} is not valid JSON; run trapdoor login again`);
  }
}

/** TRAPDOOR_ENDPOINT and TRAPDOOR_KEY override the config file, each on its own. */
export function loadCredentials(env: NodeJS.ProcessEnv = process.env): Credentials {
  const path = configPath(env);
  const file = readConfigFile(path);
  const endpoint = env.TRAPDOOR_ENDPOINT || file.endpoint;
  const key = env.TRAPDOOR_KEY || file.key;
  if (!endpoint || !key)
    throw new CliError(
      ExitCode.AUTH,
      "not logged in: run `trapdoor login --endpoint URL --key KEY`, or set TRAPDOOR_ENDPOINT and TRAPDOOR_KEY",
    );
  return { endpoint: normalizeEndpoint(endpoint), key };
}

/**
 * Writes the config readable by its owner only: the directory 0700, the file 0600, replaced
 * atomically (a temporary file created 0600, then renamed) so the key is never briefly world-readable.
 */
export function saveCredentials(credentials: Credentials, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env);
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600); // the umask may have taken bits away, never added; make it exact
  renameSync(tmp, path);
  return path;
}
