/**
 * Where webhooks may connect. Loopback, link-local (cloud metadata at 169.254.169.254 included),
 * private, carrier-grade NAT, unspecified, multicast and reserved addresses are refused, IPv4 and
 * IPv6 alike (IPv4-mapped IPv6 counts as the IPv4 address), unless the operator allows a network
 * (TRAPDOOR_WEBHOOK_ALLOWED_NETWORKS, CIDRs, e.g. "127.0.0.0/8" for tests or "10.20.0.0/16" for an
 * internal receiver).
 */
import { BlockList, isIP } from "node:net";

const REFUSED_V4 = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const;
const REFUSED_V6 = [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const;

const refused = new BlockList();
for (const [net, prefix] of REFUSED_V4) refused.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of REFUSED_V6) refused.addSubnet(net, prefix, "ipv6");

export class AddressPolicy {
  private readonly allowed = new BlockList();

  /** `allowedNetworks`: CIDRs the operator allows although they are in a refused range. */
  constructor(readonly allowedNetworks: readonly string[] = []) {
    for (const cidr of allowedNetworks) {
      const [net, bits] = cidr.split("/");
      const family = isIP(net ?? "");
      const prefix = Number(bits);
      if (!family || !Number.isInteger(prefix)) throw new Error(`not a CIDR network: ${cidr}`);
      this.allowed.addSubnet(net as string, prefix, family === 4 ? "ipv4" : "ipv6");
    }
  }

  /** Why `address` may not be connected to, or null when it may. */
  refusal(address: string): string | null {
    const family = isIP(address);
    if (!family) return `${address} is not an IP address`;
    const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] : undefined;
    const [ip, type] = mapped
      ? [mapped, "ipv4" as const]
      : [address, family === 4 ? ("ipv4" as const) : ("ipv6" as const)];
    if (this.allowed.check(ip, type)) return null;
    if (refused.check(ip, type))
      return `${address} is a loopback, link-local, private or reserved address (the operator can allow a network with TRAPDOOR_WEBHOOK_ALLOWED_NETWORKS)`;
    return null;
  }
}
