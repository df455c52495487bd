const formatters = new Map<string, Intl.DateTimeFormat>();

/** A valid IANA zone for `zone`, or "UTC" when it is empty or unknown to this runtime's ICU. */
export function safeTimeZone(zone: string | null | undefined): string {
  if (!zone) return "UTC";
  try {
    formatter(zone);
    return zone;
  } catch {
    return "UTC";
  }
}

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    // en-CA formats as YYYY-MM-DD; the calendar day is computed by ICU in `zone`, never the host TZ.
    f = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
    formatters.set(zone, f);
  }
  return f;
}

/** The calendar day (YYYY-MM-DD) of the instant `ms` in `zone`. */
export function localDay(ms: number, zone: string): string {
  const parts = formatter(zone).formatToParts(new Date(ms));
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** The day before `day` (YYYY-MM-DD), by calendar arithmetic (no zone involved). */
export function previousDay(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

/**
 * The current streak: consecutive calendar days in `zone`, ending today, each with at least one
 * completion. A streak is not broken before the day is over, so when today has no completion yet
 * the count ends at yesterday (completing something today extends it; a day with none ends it).
 * Completions dated in the future (clock skew between services) count for their own day only.
 */
export function currentStreak(completionsMs: Iterable<number>, nowMs: number, zone: string): number {
  const tz = safeTimeZone(zone);
  const days = new Set<string>();
  for (const ms of completionsMs) days.add(localDay(ms, tz));
  let day = localDay(nowMs, tz);
  if (!days.has(day)) day = previousDay(day);
  let streak = 0;
  while (days.has(day)) {
    streak++;
    day = previousDay(day);
  }
  return streak;
}
