/**
 * One webhook POST, safe against the usual server-side request forgery tricks: the host is
 * resolved once, every address it resolves to must pass the AddressPolicy, and the socket connects
 * to the address that was checked (the request's own `lookup` hands it over), so a DNS answer that
 * changes between the check and the connection (rebinding) is never used. Redirects are not
 * followed (a 3xx is a failed attempt); the answer's body is read to at most 4 KiB and dropped.
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type LookupFunction } from "node:net";
import type { AddressPolicy } from "./address-policy.ts";

export type Resolve = (host: string) => Promise<{ address: string; family: number }[]>;

export const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

export class WebhookRefused extends Error {}

/** The addresses `url`'s host resolves to, all checked; throws WebhookRefused when one is refused. */
export async function checkedAddresses(
  url: URL,
  policy: AddressPolicy,
  resolve: Resolve = systemResolve,
): Promise<{ address: string; family: number }[]> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let addresses: { address: string; family: number }[];
  if (isIP(host)) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await resolve(host);
    } catch (error) {
      throw new WebhookRefused(
        `${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      );
    }
  }
  if (addresses.length === 0) throw new WebhookRefused(`${host} does not resolve`);
  for (const { address } of addresses) {
    const why = policy.refusal(address);
    if (why) throw new WebhookRefused(`${host}: ${why}`);
  }
  return addresses;
}

export interface PostResult {
  statusCode: number;
}

export async function postJson(
  target: string,
  body: string,
  headers: Record<string, string>,
  options: { policy: AddressPolicy; resolve?: Resolve; timeoutMs: number },
): Promise<PostResult> {
  const url = new URL(target);
  const [first] = await checkedAddresses(url, options.policy, options.resolve);
  const pinned = first as { address: string; family: number };
  // Whatever the request asks to resolve, it gets the address checked above.
  const lookup = ((_host: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (opts?.all) callback(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  }) as unknown as LookupFunction;
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        lookup,
        headers: {
          ...headers,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
        timeout: options.timeoutMs,
      },
      (res) => {
        let kept = 0;
        res.on("data", (chunk: Buffer) => {
          kept += chunk.length;
          if (kept > 4096) res.destroy();
        });
        res.on("close", () => resolve({ statusCode: res.statusCode ?? 0 }));
        res.on("error", () => resolve({ statusCode: res.statusCode ?? 0 }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}
