import { RRule, Weekday } from "rrule";
import { formatWall, toWallClock } from "./time";

export type Frequency = "none" | "daily" | "weekly" | "monthly" | "custom";

export const WEEKDAYS = [
  { code: "MO", label: "Mon", day: RRule.MO },
  { code: "TU", label: "Tue", day: RRule.TU },
  { code: "WE", label: "Wed", day: RRule.WE },
  { code: "TH", label: "Thu", day: RRule.TH },
  { code: "FR", label: "Fri", day: RRule.FR },
  { code: "SA", label: "Sat", day: RRule.SA },
  { code: "SU", label: "Sun", day: RRule.SU },
] as const;

export interface RecurrenceChoice {
  frequency: Frequency;
  /** Every n days/weeks/months. */
  interval: number;
  /** Weekly: "MO", "WE", … */
  days: string[];
  /** Custom: an RRULE written by hand ("FREQ=…"). */
  custom: string;
}

/** The RRULE the picker writes (the tasks service accepts "FREQ=…"; DTSTART is the due time). */
export function toRule(c: RecurrenceChoice): string {
  const every = c.interval > 1 ? `;INTERVAL=${c.interval}` : "";
  switch (c.frequency) {
    case "none":
      return "";
    case "daily":
      return `FREQ=DAILY${every}`;
    case "weekly":
      return `FREQ=WEEKLY${every}${
        c.days.length
          ? `;BYDAY=${WEEKDAYS.filter((d) => c.days.includes(d.code))
              .map((d) => d.code)
              .join(",")}`
          : ""
      }`;
    case "monthly":
      return `FREQ=MONTHLY${every}`;
    case "custom":
      return c.custom.trim().replace(/^RRULE:/i, "");
  }
}

/** Reads a stored rule back into the picker; anything it cannot show as-is is "custom". */
export function fromRule(rule: string): RecurrenceChoice {
  const empty: RecurrenceChoice = { frequency: "none", interval: 1, days: [], custom: "" };
  const r = rule.trim().replace(/^RRULE:/i, "");
  if (!r) return empty;
  const parts = new Map(r.split(";").map((p) => p.split("=") as [string, string]));
  const known = [...parts.keys()].every((k) => ["FREQ", "INTERVAL", "BYDAY"].includes(k)) && !r.includes("\n");
  const interval = Number(parts.get("INTERVAL") ?? 1);
  const freq = parts.get("FREQ");
  if (known && Number.isInteger(interval) && interval >= 1) {
    if (freq === "DAILY" && !parts.has("BYDAY")) return { ...empty, frequency: "daily", interval };
    if (freq === "MONTHLY" && !parts.has("BYDAY")) return { ...empty, frequency: "monthly", interval };
    const days = (parts.get("BYDAY") ?? "").split(",").filter(Boolean);
    if (freq === "WEEKLY" && days.every((d) => WEEKDAYS.some((w) => w.code === d)))
      return { ...empty, frequency: "weekly", interval, days };
  }
  return { ...empty, frequency: "custom", custom: r };
}

export interface Preview {
  text: string;
  next: string[];
  error?: string;
}

/**
 * A readable preview: rrule's English text and the next occurrences after now, expanded in the
 * wall-clock frame of `zone` from the due time (as the recurrence service expands it).
 */
export function preview(rule: string, dueMs: number | undefined, zone: string, count = 3): Preview | undefined {
  if (!rule) return undefined;
  if (dueMs === undefined)
    return { text: "", next: [], error: "A repeating task needs a due date (its first occurrence)." };
  try {
    const opts = RRule.parseString(rule.replace(/^RRULE:/i, ""));
    if (opts.freq === undefined) return { text: "", next: [], error: "The rule needs FREQ (e.g. FREQ=WEEKLY)." };
    const rr = new RRule({ ...opts, dtstart: new Date(toWallClock(dueMs, zone)) });
    const nowWall = toWallClock(Date.now(), zone);
    const next = rr.between(
      new Date(Math.max(nowWall, toWallClock(dueMs, zone)) - 1),
      new Date(8.64e15),
      true,
      (_, i) => i < count,
    );
    return { text: rr.toText(), next: next.map(formatWall) };
  } catch (e) {
    return { text: "", next: [], error: `Not a valid rule: ${e instanceof Error ? e.message : String(e)}` };
  }
}

export { Weekday };
