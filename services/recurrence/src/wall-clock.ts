/**
 * Wall-clock time in an IANA zone, represented as a "fake UTC" epoch: the number whose UTC
 * fields (getUTCFullYear … getUTCSeconds) read the local date and time. That is the frame in
 * which `rrule` expands a rule correctly ("floating" dates, tzid unset): it only ever uses the
 * UTC accessors then, so the answer does not depend on the host's TZ.
 *
 * Only Date.UTC, getTime and Intl with an explicit timeZone are used here: never a local-time
 * accessor, which would read the host's zone.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    // h23: midnight is "00" (with hour12:false some ICU versions print "24").
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      era: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, f);
  }
  return f;
}

/** "" (the contract's "no zone") means UTC. Throws a RangeError for a zone ICU does not know. */
export function zoneOrUtc(zone: string): string {
  return zone === "" ? "UTC" : zone;
}

/** The wall-clock reading of instant `ms` in `zone`, as a fake-UTC epoch (milliseconds kept). */
export function toWallClock(ms: number, zone: string): number {
  const parts: Record<string, string> = {};
  for (const p of formatter(zoneOrUtc(zone)).formatToParts(new Date(ms))) parts[p.type] = p.value;
  let year = Number(parts.year);
  if (parts.era === "BC" || parts.era === "B") year = 1 - year;
  const wall = Date.UTC(
    year,
    Number(parts.month) - 1,
    Number(parts.day),
    Number(parts.hour),
    Number(parts.minute),
    Number(parts.second),
  );
  // Date.UTC maps years 0..99 to 1900..1999; set the year explicitly for those.
  const fixed = year >= 0 && year < 100 ? new Date(wall).setUTCFullYear(year) : wall;
  return fixed + (((ms % 1000) + 1000) % 1000);
}

/** UTC offset of `zone` at instant `ms`, in milliseconds (wall clock minus instant). */
export function zoneOffset(ms: number, zone: string): number {
  return toWallClock(ms, zone) - ms;
}

const DAY_MS = 86_400_000;

/**
 * The instant at which the wall clock in `zone` reads `wall` (a fake-UTC epoch).
 *
 * A reading that happens twice (the hour repeated when clocks go back) resolves to the first
 * of the two instants; a reading that never happens (skipped when clocks go forward, e.g. 02:30
 * on the last Sunday of March in Europe/Paris) is moved forward by the length of the gap, i.e.
 * interpreted with the offset in force before the gap (RFC 5545 §3.3.5: "the DATE-TIME value is
 * interpreted using the UTC offset before the gap in local times"), so 02:30 becomes 03:30.
 *
 * Assumes at most one offset change within a day either side of `wall`, which holds for every
 * zone in the IANA database in modern times.
 */
export function fromWallClock(wall: number, zone: string): number {
  const before = zoneOffset(wall - DAY_MS, zone);
  const after = zoneOffset(wall + DAY_MS, zone);
  const candidates = [wall - before, wall - after].filter((t) => toWallClock(t, zone) === wall).sort((a, b) => a - b);
  if (candidates[0] !== undefined) return candidates[0];
  // In a gap: the offset before the change.
  return wall - before;
}
