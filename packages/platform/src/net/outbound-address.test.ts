import { describe, expect, it } from "vitest";
import { checkOutboundUrl, OutboundAddressError, outboundPolicy, refusedRange } from "./outbound-address.js";

const PUBLIC_ONLY = outboundPolicy();

describe("refusedRange", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["10.1.2.3", "private"],
    ["172.31.255.255", "private"],
    ["192.168.0.1", "private"],
    ["169.254.169.254", "linkLocal"],
    ["100.64.0.1", "carrierGradeNat"],
    ["0.0.0.0", "unspecified"],
    ["224.0.0.251", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "linkLocal"],
    ["fd12:3456::1", "uniqueLocal"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:a9fe:a9fe", "linkLocal"],
    ["64:ff9b::7f00:1", "rfc6052"],
    ["2002:7f00:1::", "6to4"],
  ])("refuses %s as %s", (address, range) => {
    expect(refusedRange(address, PUBLIC_ONLY)).toBe(range);
  });

  it("lets public unicast addresses through", () => {
    for (const a of ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
      expect(refusedRange(a, PUBLIC_ONLY)).toBeUndefined();
  });

  it("lets the allow-list's networks through, and only those", () => {
    const onPrem = outboundPolicy(" 10.20.0.0/16 , fd00::5, 127.0.0.1");
    expect(refusedRange("10.20.3.4", onPrem)).toBeUndefined();
    expect(refusedRange("fd00::5", onPrem)).toBeUndefined();
    expect(refusedRange("::ffff:127.0.0.1", onPrem)).toBeUndefined();
    expect(refusedRange("10.21.0.1", onPrem)).toBe("private");
    expect(refusedRange("169.254.169.254", onPrem)).toBe("linkLocal");
  });

  it("names a bad allow-list entry", () => {
    expect(() => outboundPolicy("10.0.0.0/8,intranet")).toThrow(/"intranet" is not an IP address or CIDR/);
  });
});

describe("checkOutboundUrl", () => {
  it("resolves a name and refuses it when it points at loopback", async () => {
    const err = await checkOutboundUrl(new URL("http://localhost:9/x"), PUBLIC_ONLY).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundAddressError);
    expect((err as Error).message).toMatch(/^localhost resolves to (127\.0\.0\.1|::1), a loopback address/);
  });

  it("refuses IP literals in every spelling the URL parser accepts", async () => {
    for (const url of ["http://2130706433/", "http://0x7f.1/", "http://[::ffff:7f00:1]/", "http://0177.0.0.1/"])
      await expect(checkOutboundUrl(new URL(url), PUBLIC_ONLY)).rejects.toThrow(/loopback address/);
  });
});
