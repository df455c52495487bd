import { describe, expect, it } from "vitest";
import { isQuietAt, localMinuteOfDay } from "./quiet-hours.js";

const at = (iso: string) => Date.parse(iso);
const night = { startMinute: 22 * 60, endMinute: 7 * 60 }; // 22:00–07:00, wraps midnight
const lunch = { startMinute: 12 * 60, endMinute: 13 * 60 + 30 }; // 12:00–13:30

describe("quiet hours", () => {
  it("reads the time on the user's wall clock, not the host's (TZ=America/New_York here)", () => {
    expect(localMinuteOfDay(at("2030-01-15T23:30:00Z"), "Asia/Tokyo")).toBe(8 * 60 + 30);
    expect(localMinuteOfDay(at("2030-01-15T23:30:00Z"), "")).toBe(23 * 60 + 30);
    expect(localMinuteOfDay(at("2030-01-15T23:30:00Z"), "Not/AZone")).toBe(23 * 60 + 30);
  });

  it("treats start == end as no quiet hours at all", () => {
    expect(isQuietAt(at("2030-01-15T03:00:00Z"), "UTC", { startMinute: 600, endMinute: 600 })).toBe(false);
    expect(isQuietAt(at("2030-01-15T10:00:00Z"), "UTC", { startMinute: 600, endMinute: 600 })).toBe(false);
    expect(isQuietAt(at("2030-01-15T03:00:00Z"), "UTC", undefined)).toBe(false);
  });

  it("wraps a window past midnight (22:00–07:00): late evening and early morning are quiet, the day is not", () => {
    expect(isQuietAt(at("2030-01-15T22:00:00Z"), "UTC", night)).toBe(true);
    expect(isQuietAt(at("2030-01-15T23:59:00Z"), "UTC", night)).toBe(true);
    expect(isQuietAt(at("2030-01-16T00:00:00Z"), "UTC", night)).toBe(true);
    expect(isQuietAt(at("2030-01-16T06:59:00Z"), "UTC", night)).toBe(true);
    expect(isQuietAt(at("2030-01-16T07:00:00Z"), "UTC", night)).toBe(false); // end is exclusive
    expect(isQuietAt(at("2030-01-16T12:00:00Z"), "UTC", night)).toBe(false);
    expect(isQuietAt(at("2030-01-16T21:59:00Z"), "UTC", night)).toBe(false);
  });

  it("handles a window inside one day", () => {
    expect(isQuietAt(at("2030-01-15T11:59:00Z"), "UTC", lunch)).toBe(false);
    expect(isQuietAt(at("2030-01-15T12:00:00Z"), "UTC", lunch)).toBe(true);
    expect(isQuietAt(at("2030-01-15T13:29:00Z"), "UTC", lunch)).toBe(true);
    expect(isQuietAt(at("2030-01-15T13:30:00Z"), "UTC", lunch)).toBe(false);
  });

  it("follows the zone's DST: 22:00 Paris is quiet in winter (21:00Z) and in summer (20:00Z)", () => {
    expect(isQuietAt(at("2030-01-15T21:00:00Z"), "Europe/Paris", night)).toBe(true);
    expect(isQuietAt(at("2030-01-15T20:59:00Z"), "Europe/Paris", night)).toBe(false);
    expect(isQuietAt(at("2030-07-15T20:00:00Z"), "Europe/Paris", night)).toBe(true);
    expect(isQuietAt(at("2030-07-15T19:59:00Z"), "Europe/Paris", night)).toBe(false);
  });
});
