import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import ipaddr from "ipaddr.js";
import { ConfigError, type Field } from "../config/config.js";

/**
 * Which addresses a server-side request (a user's webhook) may reach. Only public unicast is
 * allowed by default: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
 * (169.254/16 with the cloud metadata endpoint, fe80::/10), CGNAT (100.64/10), multicast,
 * unspecified, broadcast, reserved and the IPv6 forms that embed an IPv4 address (IPv4-mapped,
 * NAT64, 6to4, Teredo) are refused, so a URL cannot make this service call into its own network.
 */
export interface OutboundPolicy {
  /** CIDRs reachable although not public, for on-premises receivers. Default none. */
  allow: readonly [ipaddr.IPv4 | ipaddr.IPv6, number][];
}

/** A URL whose host is, or resolves to, an address the policy refuses (or does not resolve). */
export class OutboundAddressError extends Error {
  override name = "OutboundAddressError";
}

/**
 * Parses a comma-separated list of CIDRs or single addresses ("10.1.2.0/24, fd00::5") into a
 * policy; throws a message naming the bad entry.
 */
export function outboundPolicy(allowList = ""): OutboundPolicy {
  const allow: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
  for (const raw of allowList.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    try {
      if (entry.includes("/")) allow.push(ipaddr.parseCIDR(entry));
      else {
        const ip = ipaddr.parse(entry);
        allow.push([ip, ip.kind() === "ipv4" ? 32 : 128]);
      }
    } catch {
      throw new Error(`"${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    }
  }
  return { allow };
}

/**
 * WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDRs a webhook may reach although they are not
 * public (an on-premises receiver, "10.20.0.0/16,fd00::/8"). Default "": public addresses only.
 */
export function outboundAllowField(): Field<OutboundPolicy> {
  return {
    parse(name, raw) {
      try {
        return outboundPolicy(raw ?? "");
      } catch (err) {
        throw new ConfigError(`${name}: ${(err as Error).message}`);
      }
    },
  };
}

/** Why `address` may not be reached ("loopback", "private", …), or undefined when it may. */
export function refusedRange(address: string, policy: OutboundPolicy): string | undefined {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // process(): an IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 it carries.
    ip = ipaddr.process(address);
  } catch {
    return "not an IP address";
  }
  for (const [net, bits] of policy.allow) if (ip.kind() === net.kind() && ip.match(net, bits)) return undefined;
  const range = ip.range();
  return range === "unicast" ? undefined : range;
}

/**
 * Checks the host of `url`: an IP literal directly, a name through DNS (every address it resolves
 * to must be allowed). A name that does not resolve now passes (DNS may be down, or the receiver
 * not yet set up): what counts is where it resolves when a request connects, and the request
 * itself must connect through `guardedLookup` for that (and against DNS rebinding).
 */
export async function checkOutboundUrl(url: URL, policy: OutboundPolicy): Promise<void> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const addresses = isIP(host) ? [host] : await resolveAll(host);
  for (const address of addresses) {
    const why = refusedRange(address, policy);
    if (why) {
      const what = isIP(host) ? `${url.hostname} is` : `${url.hostname} resolves to ${address},`;
      throw new OutboundAddressError(`${what} a ${why} address, which may not be reached from here`);
    }
  }
}

/** dns.lookup for http.request/net.connect that refuses a disallowed address at connect time. */
export function guardedLookup(policy: OutboundPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      for (const a of addresses) {
        const why = refusedRange(a.address, policy);
        if (why) {
          const e = new OutboundAddressError(`${hostname} resolves to ${a.address}, a ${why} address`);
          return callback(e as NodeJS.ErrnoException, "", 0);
        }
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return callback(new OutboundAddressError(`${hostname} has no address`), "", 0);
      callback(null, first.address, first.family);
    });
  };
}

function resolveAll(host: string): Promise<string[]> {
  return new Promise((resolve) => {
    dnsLookup(host, { all: true }, (err, addresses) => {
      if (err) resolve([]);
      else resolve(addresses.map((a) => a.address));
    });
  });
}
