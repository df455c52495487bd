/** A daily window in minutes after local midnight (0–1439), as in users' Preferences.QuietHours. */
export interface QuietWindow {
  startMinute: number;
  endMinute: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/**
 * Minutes after local midnight at `atMs` in the IANA zone `timeZone` ("" = UTC). An unknown zone
 * (users checks zones against the IANA database, but this host's may be older) is read as UTC.
 */
export function localMinuteOfDay(atMs: number, timeZone: string): number {
  const zone = timeZone || "UTC";
  let f = formatters.get(zone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    } catch {
      return localMinuteOfDay(atMs, "UTC");
    }
    formatters.set(zone, f);
  }
  let hour = 0;
  let minute = 0;
  for (const p of f.formatToParts(atMs)) {
    if (p.type === "hour") hour = Number(p.value);
    else if (p.type === "minute") minute = Number(p.value);
  }
  return hour * 60 + minute;
}

/**
 * Whether `atMs` falls in the user's quiet hours, read on the user's wall clock in `timeZone`
 * (so the window follows DST: 22:00–07:00 stays 22:00–07:00 local all year).
 *
 * - start == end means no quiet hours (the contract's rule), not "all day";
 * - start < end is the window [start, end) within one day;
 * - start > end wraps past midnight: [start, 24:00) ∪ [00:00, end), e.g. 22:00–07:00.
 *
 * The end minute is exclusive, so 22:00–07:00 lets a reminder at 07:00 through.
 */
export function isQuietAt(atMs: number, timeZone: string, quiet: QuietWindow | undefined): boolean {
  if (!quiet || quiet.startMinute === quiet.endMinute) return false;
  const m = localMinuteOfDay(atMs, timeZone);
  return quiet.startMinute < quiet.endMinute
    ? m >= quiet.startMinute && m < quiet.endMinute
    : m >= quiet.startMinute || m < quiet.endMinute;
}
