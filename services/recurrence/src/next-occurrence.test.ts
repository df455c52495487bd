import { afterEach, describe, expect, it } from "vitest";
import { nextOccurrence, RecurrenceError, type Series } from "./next-occurrence.js";
import { fromWallClock, toWallClock } from "./wall-clock.js";

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const at = (s: string) => Date.parse(s);

/** Every occurrence after `series.startMs`, following the chain the service follows (completed → next). */
function chain(series: Series, limit = 50): string[] {
  const out: string[] = [];
  let due: number | undefined = series.startMs;
  while (due !== undefined && out.length < limit) {
    due = nextOccurrence(series, due);
    if (due !== undefined) out.push(iso(due) as string);
  }
  return out;
}

describe("wall clock", () => {
  it("reads an instant as local date and time in a zone", () => {
    // 2024-07-01T07:00Z is 09:00 CEST
    expect(iso(toWallClock(at("2024-07-01T07:00:00Z"), "Europe/Paris"))).toBe("2024-07-01T09:00:00.000Z");
    expect(iso(toWallClock(at("2024-01-01T00:00:00.250Z"), "Asia/Tokyo"))).toBe("2024-01-01T09:00:00.250Z");
  });

  it("moves a time skipped by the spring-forward gap forward by the gap", () => {
    // Europe/Paris 2024-03-31: 02:00 CET → 03:00 CEST; 02:30 does not exist → 03:30 CEST = 01:30Z
    expect(iso(fromWallClock(at("2024-03-31T02:30:00Z"), "Europe/Paris"))).toBe("2024-03-31T01:30:00.000Z");
  });

  it("takes the first of the two instants of a repeated hour", () => {
    // America/New_York 2024-11-03: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST)
    expect(iso(fromWallClock(at("2024-11-03T01:30:00Z"), "America/New_York"))).toBe("2024-11-03T05:30:00.000Z");
  });
});

describe("nextOccurrence", () => {
  it("keeps a weekly Monday 09:00 in Europe/Paris at 09:00 local across the March DST change", () => {
    const series = {
      startMs: at("2024-03-18T08:00:00Z"), // Monday 09:00 CET
      timeZone: "Europe/Paris",
      rule: "RRULE:FREQ=WEEKLY;BYDAY=MO",
    };
    expect(chain(series, 3)).toEqual([
      "2024-03-25T08:00:00.000Z", // 09:00 CET
      "2024-04-01T07:00:00.000Z", // 09:00 CEST (clocks went forward on 2024-03-31)
      "2024-04-08T07:00:00.000Z",
    ]);
  });

  it("keeps a daily 08:00 in America/New_York at 08:00 local across the November fall-back", () => {
    const series = { startMs: at("2024-11-01T12:00:00Z"), timeZone: "America/New_York", rule: "FREQ=DAILY" };
    expect(chain(series, 4)).toEqual([
      "2024-11-02T12:00:00.000Z", // 08:00 EDT
      "2024-11-03T13:00:00.000Z", // 08:00 EST
      "2024-11-04T13:00:00.000Z",
      "2024-11-05T13:00:00.000Z",
    ]);
  });

  it("gives a daily 01:30 once on the fall-back day (the first 01:30), not twice", () => {
    const series = { startMs: at("2024-11-02T05:30:00Z"), timeZone: "America/New_York", rule: "FREQ=DAILY" };
    expect(chain(series, 2)).toEqual(["2024-11-03T05:30:00.000Z", "2024-11-04T06:30:00.000Z"]);
  });

  it("moves a daily 02:30 in Europe/Paris to 03:30 on the day 02:30 does not exist", () => {
    const series = { startMs: at("2024-03-30T01:30:00Z"), timeZone: "Europe/Paris", rule: "FREQ=DAILY" };
    expect(chain(series, 2)).toEqual([
      "2024-03-31T01:30:00.000Z", // 03:30 CEST
      "2024-04-01T00:30:00.000Z", // 02:30 CEST
    ]);
  });

  it("stops at UNTIL (inclusive)", () => {
    const series = {
      startMs: at("2024-01-01T08:00:00Z"), // 09:00 Paris
      timeZone: "Europe/Paris",
      rule: "RRULE:FREQ=DAILY;UNTIL=20240103T080000Z",
    };
    expect(chain(series)).toEqual(["2024-01-02T08:00:00.000Z", "2024-01-03T08:00:00.000Z"]);
    expect(nextOccurrence(series, at("2024-01-03T08:00:00Z"))).toBeUndefined();
  });

  it("takes an UNTIL date as the end of that local day", () => {
    const series = { startMs: at("2024-01-01T22:00:00Z"), timeZone: "Europe/Paris", rule: "FREQ=DAILY;UNTIL=20240103" };
    // 23:00 Paris each day, 2024-01-03 23:00 included
    expect(chain(series)).toEqual(["2024-01-02T22:00:00.000Z", "2024-01-03T22:00:00.000Z"]);
  });

  it("stops after COUNT occurrences counted from the series start", () => {
    const series = { startMs: at("2024-05-06T09:00:00Z"), timeZone: "", rule: "FREQ=WEEKLY;COUNT=3" };
    expect(chain(series)).toEqual(["2024-05-13T09:00:00.000Z", "2024-05-20T09:00:00.000Z"]);
    // Completing the third occurrence (or a later, rescheduled one) ends the series.
    expect(nextOccurrence(series, at("2024-05-20T09:00:00Z"))).toBeUndefined();
    expect(nextOccurrence(series, at("2024-05-14T09:00:00Z"))).toBe(at("2024-05-20T09:00:00Z"));
  });

  it("counts a DTSTART that does not match the rule as the first of COUNT (RFC 5545)", () => {
    // Tuesday start, Mondays only, COUNT=2: DTSTART + one Monday
    const series = { startMs: at("2024-05-07T09:00:00Z"), timeZone: "UTC", rule: "FREQ=WEEKLY;BYDAY=MO;COUNT=2" };
    expect(chain(series)).toEqual(["2024-05-13T09:00:00.000Z"]);
  });

  it("skips EXDATEs given in UTC, with a TZID, floating (the task's zone) and as dates", () => {
    const series = {
      startMs: at("2024-01-01T08:00:00Z"), // Monday 09:00 Paris
      timeZone: "Europe/Paris",
      rule: [
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=7",
        "EXDATE:20240108T080000Z",
        "EXDATE;TZID=America/New_York:20240115T030000", // = 09:00 Paris
        "EXDATE:20240122T090000,20240205T090000", // floating: Paris wall clock
        "EXDATE;VALUE=DATE:20240212",
      ].join("\n"),
    };
    expect(chain(series)).toEqual(["2024-01-29T08:00:00.000Z"]);
  });

  it("does not skip an EXDATE at a different time of day", () => {
    const series = {
      startMs: at("2024-01-01T08:00:00Z"),
      timeZone: "Europe/Paris",
      rule: "RRULE:FREQ=WEEKLY;COUNT=2\nEXDATE:20240108T100000Z",
    };
    expect(chain(series)).toEqual(["2024-01-08T08:00:00.000Z"]);
  });

  it("repeats monthly on the 31st only in months that have one", () => {
    const series = { startMs: at("2024-01-31T15:00:00Z"), timeZone: "America/New_York", rule: "FREQ=MONTHLY" };
    expect(chain(series, 4)).toEqual([
      "2024-03-31T14:00:00.000Z", // 10:00 EDT
      "2024-05-31T14:00:00.000Z",
      "2024-07-31T14:00:00.000Z",
      "2024-08-31T14:00:00.000Z",
    ]);
  });

  it("returns the first occurrence after a completed occurrence that was rescheduled", () => {
    const series = { startMs: at("2024-01-01T09:00:00Z"), timeZone: "UTC", rule: "FREQ=WEEKLY" };
    // The 2024-01-08 occurrence was moved to Wednesday 2024-01-10 and completed.
    expect(iso(nextOccurrence(series, at("2024-01-10T09:00:00Z")))).toBe("2024-01-15T09:00:00.000Z");
  });

  it("keeps the sub-second part of the due time", () => {
    const series = { startMs: at("2024-01-01T09:00:00.500Z"), timeZone: "", rule: "FREQ=DAILY" };
    expect(iso(nextOccurrence(series, series.startMs))).toBe("2024-01-02T09:00:00.500Z");
  });

  it("refuses a rule it cannot expand", () => {
    const base = { startMs: 0, timeZone: "UTC" };
    expect(() => nextOccurrence({ ...base, rule: "EXDATE:20240101T000000Z" }, 0)).toThrow(RecurrenceError);
    expect(() => nextOccurrence({ ...base, rule: "FREQ=DAILY\nFREQ=WEEKLY" }, 0)).toThrow(RecurrenceError);
    expect(() => nextOccurrence({ ...base, rule: "RRULE:FREQ=DAILY\nRDATE:20240101" }, 0)).toThrow(RecurrenceError);
    expect(() => nextOccurrence({ ...base, rule: "RRULE:FREQ=DAILY;UNTIL=tomorrow" }, 0)).toThrow(RecurrenceError);
  });
});

describe("nextOccurrence whatever the host TZ", () => {
  const original = process.env.TZ;
  afterEach(() => {
    process.env.TZ = original;
  });

  const cases: [Series, number][] = [
    [
      { startMs: at("2024-03-18T08:00:00Z"), timeZone: "Europe/Paris", rule: "FREQ=WEEKLY;BYDAY=MO" },
      at("2024-03-25T08:00:00Z"),
    ],
    [
      { startMs: at("2024-11-01T12:00:00Z"), timeZone: "America/New_York", rule: "FREQ=DAILY" },
      at("2024-11-02T12:00:00Z"),
    ],
    [
      { startMs: at("2024-11-02T05:30:00Z"), timeZone: "America/New_York", rule: "FREQ=DAILY" },
      at("2024-11-02T05:30:00Z"),
    ],
    [{ startMs: at("2024-03-30T01:30:00Z"), timeZone: "Europe/Paris", rule: "FREQ=DAILY" }, at("2024-03-30T01:30:00Z")],
    [
      { startMs: at("2024-01-31T15:00:00Z"), timeZone: "America/New_York", rule: "FREQ=MONTHLY" },
      at("2024-01-31T15:00:00Z"),
    ],
    [
      {
        startMs: at("2024-01-01T08:00:00Z"),
        timeZone: "Europe/Paris",
        rule: "RRULE:FREQ=DAILY;UNTIL=20240103T080000Z",
      },
      at("2024-01-02T08:00:00Z"),
    ],
    [
      {
        startMs: at("2024-01-01T08:00:00Z"),
        timeZone: "Europe/Paris",
        rule: "FREQ=WEEKLY;COUNT=4\nEXDATE:20240108T090000",
      },
      at("2024-01-01T08:00:00Z"),
    ],
    // Late evening in the task's zone is already the next day in UTC and in Tokyo.
    [
      { startMs: at("2024-03-05T04:30:00Z"), timeZone: "America/Los_Angeles", rule: "FREQ=WEEKLY;BYDAY=MO,WE" },
      at("2024-03-05T04:30:00Z"),
    ],
    // Sunday 2024-03-10 01:00 AEDT.
    [
      { startMs: at("2024-03-09T14:00:00Z"), timeZone: "Australia/Sydney", rule: "FREQ=MONTHLY;BYDAY=-1SU" },
      at("2024-03-31T14:00:00Z"),
    ],
  ];
  const answers = () => cases.map(([series, after]) => iso(nextOccurrence(series, after)));

  it("gives the same answers with TZ=America/New_York (vitest's), Asia/Tokyo, UTC and Pacific/Kiritimati", () => {
    expect(new Date(at("2024-01-01T00:00:00Z")).getTimezoneOffset()).toBe(300); // vitest's TZ is in effect
    const reference = answers();
    expect(reference).toEqual([
      "2024-04-01T07:00:00.000Z",
      "2024-11-03T13:00:00.000Z",
      "2024-11-03T05:30:00.000Z",
      "2024-03-31T01:30:00.000Z",
      "2024-03-31T14:00:00.000Z",
      "2024-01-03T08:00:00.000Z",
      "2024-01-15T08:00:00.000Z",
      "2024-03-07T04:30:00.000Z", // Wednesday 20:30 PST
      "2024-04-27T15:00:00.000Z", // last Sunday of April, 01:00 AEST (DST ended on 2024-04-07)
    ]);
    for (const [tz, offset] of [
      ["Asia/Tokyo", -540],
      ["UTC", 0],
      ["Pacific/Kiritimati", -840],
    ] as const) {
      process.env.TZ = tz; // Node re-reads the zone when TZ is assigned
      expect(new Date(at("2024-01-01T00:00:00Z")).getTimezoneOffset()).toBe(offset);
      expect(answers()).toEqual(reference);
    }
  });
});

describe("nextOccurrence's CPU budget", () => {
  it.each([
    ["days that never match", "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"],
    ["an INTERVAL that never reaches BYHOUR (rrule would loop for ever)", "FREQ=MINUTELY;INTERVAL=606;BYHOUR=1"],
  ])("gives up on %s after its budget with a RecurrenceError", (_, rule) => {
    const start = Date.parse("2030-01-07T00:00:00Z");
    const t = performance.now();
    expect(() => nextOccurrence({ startMs: start, timeZone: "", rule }, start, 50)).toThrow(RecurrenceError);
    expect(performance.now() - t).toBeLessThan(2000);
  });
});
