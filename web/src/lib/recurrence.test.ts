import { describe, expect, it } from "vitest";
import { fromRule, preview, toRule } from "./recurrence";
import { dayBounds, fromLocalInput, toLocalInput } from "./time";

describe("recurrence picker", () => {
  it("writes the RRULE for each choice", () => {
    const base = { interval: 1, days: [], custom: "" };
    expect(toRule({ ...base, frequency: "none" })).toBe("");
    expect(toRule({ ...base, frequency: "daily" })).toBe("FREQ=DAILY");
    expect(toRule({ ...base, frequency: "weekly", interval: 2, days: ["FR", "MO"] })).toBe(
      "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR",
    );
    expect(toRule({ ...base, frequency: "monthly" })).toBe("FREQ=MONTHLY");
    expect(toRule({ ...base, frequency: "custom", custom: " RRULE:FREQ=YEARLY;COUNT=3 " })).toBe("FREQ=YEARLY;COUNT=3");
  });

  it("reads a stored rule back into the picker, and anything else as custom", () => {
    expect(fromRule("FREQ=WEEKLY;BYDAY=MO,WE")).toMatchObject({ frequency: "weekly", days: ["MO", "WE"], interval: 1 });
    expect(fromRule("RRULE:FREQ=DAILY;INTERVAL=3")).toMatchObject({ frequency: "daily", interval: 3 });
    expect(fromRule("FREQ=MONTHLY;BYMONTHDAY=-1")).toMatchObject({
      frequency: "custom",
      custom: "FREQ=MONTHLY;BYMONTHDAY=-1",
    });
    expect(fromRule("")).toMatchObject({ frequency: "none" });
  });

  it("previews the next occurrences at the due time's wall clock in the task's zone, across a DST change", () => {
    // 2030-03-04 09:00 in New York (EST); weekly Mondays crosses the 2030-03-10 switch to EDT.
    const due = fromLocalInput("2030-03-04T09:00", "America/New_York") as number;
    expect(new Date(due).toISOString()).toBe("2030-03-04T14:00:00.000Z");
    const p = preview("FREQ=WEEKLY;BYDAY=MO", due, "America/New_York", 3);
    expect(p?.text).toBe("every week on Monday");
    expect(p?.next).toHaveLength(3);
    for (const d of p?.next ?? []) expect(d).toMatch(/09:00/);
    expect(p?.next[1]).toMatch(/Mar 11, 2030/);
  });

  it("explains a rule it cannot use instead of throwing", () => {
    expect(preview("FREQ=WEEKLY", undefined, "UTC")?.error).toMatch(/needs a due date/);
    expect(preview("BYDAY=MO", Date.UTC(2030, 0, 1), "UTC")?.error).toMatch(/FREQ/);
  });
});

describe("time in the user's zone", () => {
  it("round-trips a datetime-local value through an instant", () => {
    const ms = fromLocalInput("2030-07-01T18:30:15", "Europe/Paris") as number;
    expect(new Date(ms).toISOString()).toBe("2030-07-01T16:30:15.000Z");
    expect(toLocalInput(ms, "Europe/Paris")).toBe("2030-07-01T18:30:15");
    expect(fromLocalInput("", "UTC")).toBeUndefined();
  });

  it("bounds 'today' by the zone's midnights, 23 hours long on a spring-forward day", () => {
    const [start, end] = dayBounds(Date.UTC(2030, 2, 10, 15), "America/New_York");
    expect(new Date(start).toISOString()).toBe("2030-03-10T05:00:00.000Z");
    expect(new Date(end).toISOString()).toBe("2030-03-11T04:00:00.000Z");
  });
});
