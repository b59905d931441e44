import { readFileSync } from "node:fs";
import { parse } from "../args.ts";
import { normalizeEndpoint, saveCredentials } from "../config.ts";
import { ExitCode, usageError } from "../exit-codes.ts";
import type { Output } from "../output.ts";
import { type Tenant, TrapdoorClient, VIEWER } from "../sdk.ts";

export const LOGIN_USAGE = `trapdoor login --endpoint URL --key KEY   check the key against the API, then save both
    --key -    read the key from stdin (keeps it out of the process list and shell history)`;

export async function loginCommand(argv: string[], out: Output, env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(argv, { endpoint: { type: "string" }, key: { type: "string" } });
  if (positionals.length > 0) throw usageError(`unexpected argument ${positionals[0]}\n${LOGIN_USAGE}`);
  const endpoint = values.endpoint ?? env.TRAPDOOR_ENDPOINT;
  let key = values.key ?? env.TRAPDOOR_KEY;
  if (!endpoint || !key) throw usageError(`login needs --endpoint and --key\n${LOGIN_USAGE}`);
  if (key === "-") key = readFileSync(0, "utf8").trim();
  if (!key) throw usageError("the key read from stdin is empty");
  const api = new TrapdoorClient({ endpoint: normalizeEndpoint(endpoint), key });
  // A key the API refuses exits with the auth code before anything is written.
  const { viewer } = await api.request<{ viewer: Tenant }>(VIEWER, {}, { idempotent: true });
  const path = saveCredentials(api.credentials, env);
  out.result(
    { endpoint: api.endpoint, tenant: viewer, config: path },
    () => `logged in to ${api.endpoint} as tenant ${viewer.name} (${viewer.id}); saved to ${path}`,
  );
  return ExitCode.OK;
}
