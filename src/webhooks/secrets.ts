/**
 * Webhook signing secrets: made here, shown to the tenant once, stored encrypted (AES-256-GCM
 * under a key derived from the service's signing secret), and used to sign deliveries the way
 * Stripe signs its own: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, one v1 per secret
 * that is valid (the new one, and the previous one during a rotation's grace period).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";

export function newSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

function keyFrom(serviceSecret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", serviceSecret, "trapdoor", "webhook secrets", 32));
}

export function encryptSecret(secret: string, serviceSecret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keyFrom(serviceSecret), iv);
  const body = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
  return [iv, cipher.getAuthTag(), body].map((b) => b.toString("base64url")).join(".");
}

export function decryptSecret(ciphertext: string, serviceSecret: string): string {
  const [iv, tag, body] = ciphertext.split(".").map((part) => Buffer.from(part, "base64url"));
  if (!iv || !tag || !body) throw new Error("malformed webhook secret ciphertext");
  const decipher = createDecipheriv("aes-256-gcm", keyFrom(serviceSecret), iv);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
}

export function signatureHeader(secrets: string[], timestamp: number, body: string): string {
  const mac = (secret: string) => createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return [`t=${timestamp}`, ...secrets.map((s) => `v1=${mac(s)}`)].join(",");
}

/**
 * What a receiver does (documented for platforms; tests use it): true when one v1 matches
 * `secret` and `t` is within `toleranceSeconds` of `now` (a replayed old delivery is refused).
 */
export function verifySignature(
  header: string,
  body: string,
  secret: string,
  toleranceSeconds = 300,
  now = Math.floor(Date.now() / 1000),
): boolean {
  const fields = header.split(",").map((kv) => kv.split("=", 2) as [string, string]);
  const t = Number(fields.find(([k]) => k === "t")?.[1]);
  if (!Number.isInteger(t) || Math.abs(now - t) > toleranceSeconds) return false;
  const expected = Buffer.from(createHmac("sha256", secret).update(`${t}.${body}`).digest("hex"));
  return fields.some(
    ([k, v]) => k === "v1" && v.length === expected.length && timingSafeEqual(Buffer.from(v), expected),
  );
}
