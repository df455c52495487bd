import { describe, expect, it } from "vitest";
import { currentStreak, localDay, previousDay, safeTimeZone } from "./streak.js";

const at = (iso: string) => Date.parse(iso);

describe("currentStreak", () => {
  // 12:00 on 10 March in Tokyo (UTC+9); 22:00 on 9 March in New York (the tests' host TZ).
  const now = at("2024-03-10T03:00:00Z");
  const completions = [
    at("2024-03-09T15:30:00Z"), // Tokyo 10 Mar 00:30 · UTC 9 Mar · New York 9 Mar
    at("2024-03-09T14:00:00Z"), // Tokyo  9 Mar 23:00 · UTC 9 Mar · New York 9 Mar
    at("2024-03-08T01:00:00Z"), // Tokyo  8 Mar 10:00 · UTC 8 Mar · New York 7 Mar
  ];

  it("counts consecutive calendar days in the user's zone, not the host's or UTC", () => {
    expect(currentStreak(completions, now, "Asia/Tokyo")).toBe(3);
    expect(currentStreak(completions, now, "UTC")).toBe(2);
    expect(currentStreak(completions, now, "America/New_York")).toBe(1);
  });

  it("keeps yesterday's streak while today has no completion yet, and ends it after a day without any", () => {
    expect(currentStreak(completions, at("2024-03-11T14:59:00Z"), "Asia/Tokyo")).toBe(3); // 23:59 on 11 Mar
    expect(currentStreak(completions, at("2024-03-11T15:00:00Z"), "Asia/Tokyo")).toBe(0); // 00:00 on 12 Mar
  });

  it("is 0 without completions and 1 for a completion today only", () => {
    expect(currentStreak([], now, "UTC")).toBe(0);
    expect(currentStreak([now - 1000], now, "UTC")).toBe(1);
  });

  it("counts the days across a DST change in the zone", () => {
    // New York moved to EDT on 10 March 2024; completions at 23:30 local each evening.
    const evenings = [
      at("2024-03-09T04:30:00Z"), // 8 Mar 23:30 EST
      at("2024-03-10T04:30:00Z"), // 9 Mar 23:30 EST
      at("2024-03-11T03:30:00Z"), // 10 Mar 23:30 EDT
    ];
    expect(currentStreak(evenings, at("2024-03-11T12:00:00Z"), "America/New_York")).toBe(3);
  });

  it("falls back to UTC for an unknown or empty zone", () => {
    expect(safeTimeZone("Mars/Olympus_Mons")).toBe("UTC");
    expect(safeTimeZone("")).toBe("UTC");
    expect(safeTimeZone("Europe/Paris")).toBe("Europe/Paris");
    expect(currentStreak(completions, now, "Mars/Olympus_Mons")).toBe(2);
  });
});

describe("calendar days", () => {
  it("formats the local day and steps back across month and year ends", () => {
    expect(localDay(at("2024-12-31T23:30:00Z"), "Asia/Tokyo")).toBe("2025-01-01");
    expect(previousDay("2025-01-01")).toBe("2024-12-31");
    expect(previousDay("2024-03-01")).toBe("2024-02-29");
  });
});
