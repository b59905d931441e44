/**
 * The local store's signed URLs (HMAC-SHA256 with its signing secret, compared in constant time):
 *   PUT <publicBaseUrl><mountPath>/<key>?expires=<unix s>&size=<bytes>&iat=<ms>&sig=<mac>
 *   GET <publicBaseUrl><mountPath>/<key>?expires=<unix s>[&name=<file name>]&sig=<mac>
 * `iat` is the URL's issue stamp (nextStamp, local-write.ts): a PUT is refused when the object
 * was written at or after its URL was issued, so a used upload URL cannot be replayed.
 * LocalStore issues the URLs; localStoreRouter (local-router.ts) checks them.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** What a PUT URL's signature covers. */
export function putFields(key: string, expires: number, size: number, iat: number): string {
  return JSON.stringify(["PUT", key, expires, size, iat]);
}

/** What a GET URL's signature covers ("" when the URL names no file). */
export function getFields(key: string, expires: number, name: string): string {
  return JSON.stringify(["GET", key, expires, name]);
}

function encodeKey(key: string): string {
  return key.split("/").map(encodeURIComponent).join("/");
}

function sign(secret: string, fields: string): string {
  return createHmac("sha256", secret).update(fields).digest("base64url");
}

/** Constant-time check of a URL signature. */
export function verifySignature(secret: string, fields: string, sig: string): boolean {
  const expected = Buffer.from(sign(secret, fields));
  const given = Buffer.from(sig);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A signed upload URL for exactly `size` bytes, issued at `iat`. */
export function signedPutUrl(
  baseUrl: string,
  secret: string,
  key: string,
  expires: number,
  size: number,
  iat: number,
): string {
  const sig = sign(secret, putFields(key, expires, size, iat));
  const query = new URLSearchParams({
    expires: String(expires),
    size: String(size),
    iat: String(iat),
    sig,
  });
  return `${baseUrl}/${encodeKey(key)}?${query}`;
}

/** A signed download URL; with `fileName`, served as an attachment of that name. */
export function signedGetUrl(
  baseUrl: string,
  secret: string,
  key: string,
  expires: number,
  fileName: string | undefined,
): string {
  const query = new URLSearchParams({ expires: String(expires) });
  if (fileName) query.set("name", fileName);
  query.set("sig", sign(secret, getFields(key, expires, fileName ?? "")));
  return `${baseUrl}/${encodeKey(key)}?${query}`;
}
