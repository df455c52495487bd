import { describe, expect, it } from "vitest";
import { clientAddress } from "./rate-limit.js";
import { TokenBuckets } from "./token-buckets.js";

function clock() {
  const c = { t: 1_000, now: () => c.t };
  return c;
}

describe("TokenBuckets", () => {
  it("allows a full burst, then refuses with the time until the next token", () => {
    const c = clock();
    const buckets = new TokenBuckets({ ratePerSecond: 2, burst: 3 }, { now: c.now });
    expect([buckets.take("a"), buckets.take("a"), buckets.take("a")].every((r) => r.allowed)).toBe(true);
    expect(buckets.take("a")).toEqual({ allowed: false, retryAfterMs: 500, limitedBy: "a" });
    c.t += 200;
    const r = buckets.take("a");
    expect(r.allowed).toBe(false);
    expect(r.allowed ? 0 : r.retryAfterMs).toBeCloseTo(300, 6);
  });

  it("refills at its rate and never beyond the burst", () => {
    const c = clock();
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 2 }, { now: c.now });
    buckets.take("a");
    buckets.take("a");
    c.t += 1000;
    expect(buckets.take("a").allowed).toBe(true);
    expect(buckets.take("a").allowed).toBe(false);
    // An hour idle refills to the burst, not to 3600.
    c.t += 3_600_000;
    const taken = Array.from({ length: 5 }, () => buckets.take("a").allowed);
    expect(taken).toEqual([true, true, false, false, false]);
  });

  it("keeps each key's bucket apart", () => {
    const c = clock();
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1 }, { now: c.now });
    expect(buckets.take("user:a").allowed).toBe(true);
    expect(buckets.take("user:a").allowed).toBe(false);
    expect(buckets.take("user:b").allowed).toBe(true);
  });

  it("takes from every key's bucket or from none, naming the one that refused", () => {
    const c = clock();
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 2 }, { now: c.now });
    buckets.take("email:x");
    buckets.take("email:x");
    const refused = buckets.take("address:1", "email:x");
    expect(refused).toMatchObject({ allowed: false, limitedBy: "email:x" });
    // The refused call took nothing from the address: it still has its whole burst.
    expect(buckets.take("address:1").allowed).toBe(true);
    expect(buckets.take("address:1").allowed).toBe(true);
    expect(buckets.take("address:1").allowed).toBe(false);
  });

  it("keeps at most maxKeys keys under many distinct keys, dropping the least recently used", () => {
    const c = clock();
    const buckets = new TokenBuckets({ ratePerSecond: 1, burst: 1 }, { now: c.now, maxKeys: 1000 });
    buckets.take("hot");
    for (let i = 0; i < 100_000; i++) {
      buckets.take(`address:${i}`);
      // "hot" is used all along, so it is never the least recently used: its empty bucket stays.
      if (i % 500 === 0) expect(buckets.take("hot").allowed).toBe(false);
      expect(buckets.size).toBeLessThanOrEqual(1000);
    }
    expect(buckets.size).toBe(1000);
    // An early key was dropped and comes back full; a recent one is still empty.
    expect(buckets.take("address:0").allowed).toBe(true);
    expect(buckets.take("address:99999").allowed).toBe(false);
  });

  it("refuses a spec without a positive rate or a burst of at least one", () => {
    expect(() => new TokenBuckets({ ratePerSecond: 0, burst: 1 })).toThrow(/rate/);
    expect(() => new TokenBuckets({ ratePerSecond: 1, burst: 0 })).toThrow(/burst/);
  });
});

describe("clientAddress", () => {
  const xff = (v: string) => new Headers({ "x-forwarded-for": v });

  it("is the TCP peer, and x-forwarded-for is ignored unless proxies are trusted", () => {
    expect(clientAddress("127.0.0.1", xff("10.9.9.9"), 0)).toBe("127.0.0.1");
    expect(clientAddress("::ffff:192.0.2.7", new Headers(), 0)).toBe("192.0.2.7");
  });

  it("behind trusted proxies, is the entry the outermost one appended (entries left of it are forgeable)", () => {
    expect(clientAddress("10.0.0.1", xff("6.6.6.6, 198.51.100.4"), 1)).toBe("198.51.100.4");
    expect(clientAddress("10.0.0.1", xff("6.6.6.6, 198.51.100.4, 10.0.0.2"), 2)).toBe("198.51.100.4");
    // Fewer entries than trusted hops: the request did not come through them; the peer it is.
    expect(clientAddress("10.0.0.1", xff("198.51.100.4"), 2)).toBe("10.0.0.1");
    expect(clientAddress("10.0.0.1", new Headers(), 1)).toBe("10.0.0.1");
  });

  it("counts IPv6 clients by their /64", () => {
    expect(clientAddress("2001:db8:1:2:aaaa::1", new Headers(), 0)).toBe("2001:db8:1:2::/64");
    expect(clientAddress("2001:DB8:1:2:ffff:1:2:3", new Headers(), 0)).toBe("2001:db8:1:2::/64");
    expect(clientAddress("::1", new Headers(), 0)).toBe("0:0:0:0::/64");
  });
});
