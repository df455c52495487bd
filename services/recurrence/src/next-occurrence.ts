import { RuleBudgetExceeded, withBudget } from "@taskmesh/platform";
import rrulePkg, { type Options } from "rrule";
import { fromWallClock, toWallClock, zoneOrUtc } from "./wall-clock.js";

// rrule ships CommonJS for Node; its ESM build is not loadable by Node, so take the default export.
const { RRule } = rrulePkg;

/** A rule the recurrence service cannot expand (the event is then dead-lettered with this message). */
export class RecurrenceError extends Error {
  override name = "RecurrenceError";
}

export interface Series {
  /**
   * DTSTART: the due time of the series' first occurrence, epoch ms. COUNT is counted from here,
   * and BYxxx parts that the rule leaves out (the weekday, the hour, …) are taken from it.
   */
  startMs: number;
  /** IANA zone the rule is expanded in (wall-clock recurrence across DST); "" means UTC. */
  timeZone: string;
  /** The task's recurrence_rule: one RRULE line ("FREQ=…" or "RRULE:FREQ=…"), optional EXDATE lines. */
  rule: string;
}

/** Bound on the occurrences looked at, so a pathological rule fails instead of spinning for minutes. */
const MAX_ITERATIONS = 1_000_000;

/**
 * CPU time one expansion may take. The consumer handles events one at a time, so this bounds how
 * long one user's bad rule (tasks refuses those since, but older rows and other producers exist)
 * can delay everyone else's next occurrence; past it the event is dead-lettered with the reason.
 */
export const EXPANSION_BUDGET_MS = 200;

/**
 * The first occurrence of `series` strictly after the instant `afterMs` (the due time of the
 * occurrence just completed), or undefined when the series has ended (UNTIL, COUNT, or every
 * remaining occurrence is an EXDATE).
 *
 * How: DTSTART is converted to its wall-clock reading in the zone, the rule is expanded by
 * `rrule` in that wall-clock frame with no tzid (where rrule uses only UTC accessors, so the host
 * TZ does not matter), and each occurrence's wall-clock reading is converted back to an instant
 * in the zone (a repeated hour → its first instant, a skipped one → moved forward by the gap).
 * So "every Monday 09:00 Europe/Paris" stays 09:00 local across daylight-saving changes.
 */
export function nextOccurrence(series: Series, afterMs: number, budgetMs = EXPANSION_BUDGET_MS): number | undefined {
  try {
    return expand(series, afterMs, budgetMs);
  } catch (err) {
    if (err instanceof RuleBudgetExceeded)
      throw new RecurrenceError(`no next occurrence of "${series.rule.slice(0, 200)}" found within ${budgetMs} ms`);
    throw err;
  }
}

function expand(series: Series, afterMs: number, budgetMs: number): number | undefined {
  const zone = zoneOrUtc(series.timeZone);
  const { rrule, exdates } = parseRecurrence(series.rule);

  // rrule works in whole seconds; carry a sub-second part of DTSTART over to every occurrence.
  const wallStartMs = toWallClock(series.startMs, zone);
  const subSecond = ((wallStartMs % 1000) + 1000) % 1000;
  const dtstart = new Date(wallStartMs - subSecond);

  let parsed: Partial<Options>;
  try {
    parsed = RRule.parseString(rrule);
  } catch (err) {
    throw new RecurrenceError(`not a valid RRULE "${rrule}": ${err instanceof Error ? err.message : String(err)}`);
  }
  const options: Partial<Options> = { ...parsed, dtstart, tzid: null };
  if (options.freq === undefined || options.freq === null || Number.isNaN(options.freq)) {
    throw new RecurrenceError(`RRULE has no valid FREQ: "${rrule}"`);
  }
  const until = untilWallClock(rrule, zone);
  if (until !== undefined) options.until = new Date(until);

  // RFC 5545 §3.8.5.3: DTSTART always counts as the first occurrence, also when it does not
  // match the rule (a due time on a Tuesday with BYDAY=MO); rrule (like dateutil) only yields
  // dates that match, so such a DTSTART uses up one of COUNT.
  if (typeof options.count === "number") {
    const first = withBudget(new RRule({ ...options, count: 1 }), budgetMs).all()[0];
    if (first?.getTime() !== dtstart.getTime()) {
      if (options.count <= 1) return undefined;
      options.count -= 1;
    }
  }

  const excluded = resolveExdates(exdates, zone);
  let next: number | undefined;
  let seen = 0;
  withBudget(new RRule(options), budgetMs).all((wall) => {
    if (++seen > MAX_ITERATIONS) {
      throw new RecurrenceError(`no occurrence found within the first ${MAX_ITERATIONS} of "${rrule}"`);
    }
    const instant = fromWallClock(wall.getTime(), zone);
    if (instant + subSecond <= afterMs) return true;
    if (excluded.instants.has(Math.floor(instant / 1000))) return true;
    if (excluded.dates.has(isoDate(wall.getTime()))) return true;
    next = instant + subSecond;
    return false;
  });
  return next;
}

interface ParsedRecurrence {
  /** The RRULE line without its "RRULE:" name. */
  rrule: string;
  /** Each EXDATE line: its parameters and values. */
  exdates: { params: Record<string, string>; values: string[] }[];
}

/** Splits the recurrence text (RFC 5545 content lines) into the RRULE and EXDATE lines. */
export function parseRecurrence(text: string): ParsedRecurrence {
  let rrule: string | undefined;
  const exdates: ParsedRecurrence["exdates"] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") continue;
    const m = /^([A-Za-z-]+)((?:;[^:]*)?):(.*)$/.exec(line);
    const name = m?.[1]?.toUpperCase();
    if (m && name === "RRULE") {
      if (rrule !== undefined) throw new RecurrenceError("more than one RRULE");
      rrule = m[3] ?? "";
    } else if (m && name === "EXDATE") {
      const params: Record<string, string> = {};
      for (const p of (m[2] ?? "").split(";").filter(Boolean)) {
        const [k, v] = p.split("=");
        if (k && v) params[k.toUpperCase()] = v.replace(/^"|"$/g, "");
      }
      exdates.push({ params, values: (m[3] ?? "").split(",").map((v) => v.trim()) });
    } else if (!m && /^FREQ=|;FREQ=/i.test(line) && rrule === undefined) {
      rrule = line; // the bare "FREQ=WEEKLY;BYDAY=MO" form
    } else {
      throw new RecurrenceError(`unsupported recurrence line "${line.slice(0, 60)}"`);
    }
  }
  if (rrule === undefined) throw new RecurrenceError("no RRULE");
  if (/(^|;)(DTSTART|TZID)=/i.test(rrule)) {
    throw new RecurrenceError("the RRULE must not carry DTSTART/TZID: the task's due time and zone are the start");
  }
  return { rrule, exdates };
}

const DATE_TIME = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/;

interface DateTimeValue {
  /** Fake-UTC reading of the value's fields. */
  fields: number;
  /** True for a date without a time. */
  dateOnly: boolean;
  /** True for a UTC ("Z") value. */
  utc: boolean;
}

function parseDateTime(value: string, what: string): DateTimeValue {
  const m = DATE_TIME.exec(value.toUpperCase());
  if (!m) throw new RecurrenceError(`${what} "${value}" is not an RFC 5545 DATE or DATE-TIME`);
  const n = (i: number) => Number(m[i] ?? 0);
  const fields = Date.UTC(n(1), n(2) - 1, n(3), n(4), n(5), n(6));
  return { fields, dateOnly: m[4] === undefined, utc: m[7] === "Z" };
}

/**
 * UNTIL as a wall-clock reading in the task's zone. RFC 5545 wants it in UTC ("…Z") when DTSTART
 * has a zone; a floating value is taken as wall-clock time in the task's zone, and a DATE as the
 * end of that local day (inclusive: occurrences on that date still happen).
 */
function untilWallClock(rrule: string, zone: string): number | undefined {
  const m = /(?:^|;)UNTIL=([^;]+)/i.exec(rrule);
  if (!m?.[1]) return undefined;
  const v = parseDateTime(m[1], "UNTIL");
  if (v.utc) return toWallClock(v.fields, zone);
  if (v.dateOnly) return v.fields + 86_399_000;
  return v.fields;
}

/**
 * EXDATE values as instants (whole seconds) and local dates. A UTC value is that instant; one
 * with TZID is wall-clock time in that zone; a floating one is wall-clock time in the task's
 * zone; a DATE (VALUE=DATE or 8 digits) excludes every occurrence on that local date.
 */
function resolveExdates(
  lines: ParsedRecurrence["exdates"],
  zone: string,
): { instants: Set<number>; dates: Set<string> } {
  const instants = new Set<number>();
  const dates = new Set<string>();
  for (const { params, values } of lines) {
    const tzid = params.TZID;
    for (const value of values) {
      if (value === "") continue;
      const v = parseDateTime(value, "EXDATE");
      if (v.dateOnly || params.VALUE?.toUpperCase() === "DATE") {
        dates.add(isoDate(v.fields));
        continue;
      }
      let instant: number;
      if (v.utc) instant = v.fields;
      else {
        try {
          instant = fromWallClock(v.fields, tzid ?? zone);
        } catch {
          throw new RecurrenceError(`EXDATE TZID "${tzid}" is not a known time zone`);
        }
      }
      instants.add(Math.floor(instant / 1000));
    }
  }
  return { instants, dates };
}

/** YYYY-MM-DD of a fake-UTC wall-clock reading. */
function isoDate(wall: number): string {
  return new Date(wall).toISOString().slice(0, 10);
}
