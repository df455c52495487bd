import { Code, ConnectError } from "@connectrpc/connect";
import { RuleBudgetExceeded, withBudget } from "@taskmesh/platform";
import rrulePkg from "rrule";

// rrule ships CommonJS for Node; its ESM build is not loadable by Node, so take the default export.
const { rrulestr, RRuleSet } = rrulePkg;

/**
 * Domain rules beyond what the contract's buf.validate annotations can say. Each failure is
 * INVALID_ARGUMENT naming the field path the caller sent (e.g. `task.recurrence_rule: ...`).
 */
export function invalid(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** Earliest and latest instants a google.protobuf.Timestamp may hold (0001-01-01 .. 9999-12-31). */
const MIN_TIMESTAMP_MS = -62_135_596_800_000;
const MAX_TIMESTAMP_MS = 253_402_300_799_999;

export function checkTimestamp(field: string, ms: number): number {
  if (!Number.isFinite(ms) || ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS)
    throw invalid(field, "must be between 0001-01-01 and 9999-12-31");
  return ms;
}

/**
 * An IANA zone name, or "" for UTC. ICU (behind Intl) knows the IANA database and throws a
 * RangeError for an unknown zone. Offsets such as "+05:00" are refused although newer V8 accepts
 * them: an offset is not a zone and would not follow daylight-saving changes. A name that differs
 * only in case is stored in ICU's spelling ("europe/berlin" → "Europe/Berlin"); aliases are kept
 * as the caller wrote them.
 */
export function normalizeTimeZone(field: string, zone: string): string {
  if (zone === "") return "";
  if (!/^[A-Za-z]/.test(zone)) throw invalid(field, `"${zone}" is not an IANA time zone name`);
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat("en-US", { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw invalid(field, `"${zone}" is not an IANA time zone name`);
  }
  return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
}

/**
 * An RFC 5545 recurrence: one RRULE (written "FREQ=..." or "RRULE:FREQ=...") and optional
 * EXDATE lines. DTSTART is the task's due time, so a DTSTART line is refused rather than
 * silently disagreeing with it. The rule is parsed with `rrule` (what the recurrence service
 * expands it with), plus the checks `rrule` skips: it accepts e.g. COUNT=abc as NaN.
 * Returns the rule trimmed, one property per line.
 */
export function normalizeRecurrence(field: string, rule: string, dueMs: number | null): string {
  const lines = rule
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (lines.length === 0) return "";
  if (dueMs === null) throw invalid(field, "a recurrence needs a due_time (the first occurrence)");
  let rrules = 0;
  const normalized: string[] = [];
  for (const line of lines) {
    const name = /^([A-Za-z-]+)[;:]/.exec(line)?.[1]?.toUpperCase();
    if (name === "RRULE") {
      rrules++;
      normalized.push(line);
    } else if (name === "EXDATE") {
      normalized.push(line);
    } else if (name === "DTSTART") {
      throw invalid(field, "must not contain DTSTART: the due_time is the start of the recurrence");
    } else if (name === undefined && /^[A-Za-z]+=/.test(line)) {
      rrules++;
      normalized.push(`RRULE:${line}`);
    } else {
      throw invalid(field, `unsupported line "${truncate(line)}" (expected an RRULE and optional EXDATE lines)`);
    }
  }
  if (rrules !== 1) throw invalid(field, `must contain exactly one RRULE, found ${rrules}`);

  let set: ReturnType<typeof rrulestr>;
  try {
    set = rrulestr(normalized.join("\n"), { forceset: true, dtstart: new Date(dueMs) });
  } catch {
    // rrule's own exception text ("Invalid weekday string: XX", "Unknown RRULE property ...") is
    // not part of our contract; say what the caller can fix instead.
    throw invalid(field, "not a valid RRULE (expected e.g. FREQ=WEEKLY;BYDAY=MO,WE: RFC 5545 rule parts)");
  }
  const parsed = "rrules" in set ? set.rrules()[0] : set;
  const opts = parsed?.origOptions;
  if (!opts || opts.freq === undefined || opts.freq === null || Number.isNaN(opts.freq))
    throw invalid(field, "not a valid RRULE (FREQ is missing or unknown)");
  for (const [key, [min, max, nonZero]] of Object.entries(INTEGER_PARTS)) {
    const value = (opts as Record<string, unknown>)[key];
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max || (nonZero && v === 0))
        throw invalid(
          field,
          `${key.toUpperCase()} must be ${nonZero ? "a non-zero " : "an "}integer in ${min}..${max}`,
        );
    }
  }
  if (opts.until !== undefined && opts.until !== null && Number.isNaN(opts.until.getTime()))
    throw invalid(field, "UNTIL is not a date");
  if (opts.count != null && opts.until != null) throw invalid(field, "COUNT and UNTIL must not both be set");
  if (parsed) {
    // rrules() hands out copies: arm one and expand it with the set's EXDATEs.
    const armed = new RRuleSet();
    armed.rrule(withBudget(parsed, RULE_BUDGET_MS));
    if ("exdates" in set) for (const d of set.exdates()) armed.exdate(d);
    proveNextOccurrence(field, armed, dueMs, opts.count != null || opts.until != null);
  }
  return normalized.join("\n");
}

/** CPU time a rule may take to show its next occurrence at CreateTask/UpdateTask. */
export const RULE_BUDGET_MS = 100;

/**
 * How far after the due time the next occurrence must fall: one Gregorian cycle (400 years), after
 * which the calendar repeats, so a rule that matches nothing in it never matches at all.
 */
const RULE_WINDOW_MS = 400 * 365.2425 * 86_400_000;

/**
 * Refuses a rule that never recurs, or that rrule cannot expand within RULE_BUDGET_MS: the
 * recurrence service expands the same rule on every completion, and a rule that walks to year 9999
 * without a match (FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30) costs seconds of its CPU each time.
 * A rule with COUNT or UNTIL may end without a further occurrence.
 */
function proveNextOccurrence(field: string, set: rrulePkg.RRuleSet, dueMs: number, ends: boolean): void {
  let found = false;
  try {
    set.all((d) => {
      const t = d.getTime();
      if (t > dueMs + RULE_WINDOW_MS) return false;
      if (t > dueMs) found = true;
      return !found;
    });
  } catch (e) {
    if (e instanceof RuleBudgetExceeded)
      throw invalid(
        field,
        `finding the occurrence after due_time took over ${RULE_BUDGET_MS} ms; the rule parts probably never match together (e.g. BYMONTH=2;BYMONTHDAY=30)`,
      );
    throw invalid(field, "cannot be expanded from the due_time; check its rule parts");
  }
  if (!found && !ends)
    throw invalid(
      field,
      "never recurs: no occurrence after due_time within 400 years; the rule parts probably never match together (e.g. BYMONTH=2;BYMONTHDAY=30)",
    );
}

/**
 * Reminder offsets in whole seconds (the contract bounds them to 0..30 days and 10 items).
 * Each offset fires once, so a repeated offset is refused rather than silently merged.
 */
export function reminderSeconds(
  field: string,
  offsets: readonly { seconds: bigint; nanos: number }[],
  dueMs: number | null,
): number[] {
  if (offsets.length > 0 && dueMs === null) throw invalid(field, "reminders need a due_time");
  const out: number[] = [];
  offsets.forEach((o, i) => {
    if (o.nanos !== 0) throw invalid(`${field}[${i}]`, "must be a whole number of seconds");
    const s = Number(o.seconds);
    if (out.includes(s)) throw invalid(`${field}[${i}]`, `duplicate offset ${s}s`);
    out.push(s);
  });
  return out;
}

/** RFC 5545 §3.3.10 ranges of the integer rule parts: [min, max, zero forbidden]. `rrule` checks none of them. */
const INTEGER_PARTS: Record<string, [number, number, boolean]> = {
  count: [1, 1_000_000, false],
  interval: [1, 10_000, false],
  bysecond: [0, 60, false],
  byminute: [0, 59, false],
  byhour: [0, 23, false],
  bymonthday: [-31, 31, true],
  byyearday: [-366, 366, true],
  byweekno: [-53, 53, true],
  bymonth: [1, 12, false],
  bysetpos: [-366, 366, true],
};

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
