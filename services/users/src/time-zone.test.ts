import { describe, expect, it } from "vitest";
import { canonicalTimeZone } from "./time-zone.js";

describe("canonicalTimeZone", () => {
  it("accepts IANA names and returns their canonical spelling", () => {
    expect(canonicalTimeZone("Europe/Paris")).toBe("Europe/Paris");
    expect(canonicalTimeZone("europe/paris")).toBe("Europe/Paris");
    // ICU's canonical spelling of some links differs between Node versions ("America/Buenos_Aires"
    // vs "America/Argentina/Buenos_Aires"); what matters is that the stored name is itself valid.
    const ba = canonicalTimeZone("America/Argentina/Buenos_Aires");
    expect(ba).toMatch(/^America\/(Argentina\/)?Buenos_Aires$/);
    expect(canonicalTimeZone(ba as string)).toBe(ba);
    expect(canonicalTimeZone("UTC")).toBe("UTC");
    expect(canonicalTimeZone("Etc/UTC")).toBe("UTC");
    expect(canonicalTimeZone("US/Eastern")).toBe("America/New_York");
  });

  it("refuses names the IANA database does not have, offsets and junk", () => {
    for (const bad of [
      "Mars/Olympus_Mons",
      "Europe/Pariss",
      "+01:00",
      "UTC+1",
      "GMT-05:00",
      "Europe/../Paris",
      " UTC",
      "",
    ])
      expect(canonicalTimeZone(bad), bad).toBeUndefined();
  });
});
