import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";

/** The browser's zone, the default for a new user's preferences and tasks. */
export const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const formatters = new Map<string, Intl.DateTimeFormat>();
function parts(ms: number, zone: string): Record<string, number> {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, f);
  }
  const out: Record<string, number> = {};
  for (const p of f.formatToParts(new Date(ms))) if (p.type !== "literal") out[p.type] = Number(p.value);
  return out;
}

/** The wall-clock reading of an instant in `zone`, as a "fake UTC" epoch (its UTC fields read the local time). */
export function toWallClock(ms: number, zone: string): number {
  const p = parts(ms, zone);
  return Date.UTC(p.year ?? 1970, (p.month ?? 1) - 1, p.day ?? 1, p.hour ?? 0, p.minute ?? 0, p.second ?? 0);
}

/** The instant whose wall clock in `zone` reads `wall` (fake UTC); two passes settle DST edges. */
export function fromWallClock(wall: number, zone: string): number {
  let ms = wall - (toWallClock(wall, zone) - wall);
  ms = wall - (toWallClock(ms, zone) - ms);
  return ms;
}

/** "2026-12-07T09:30:00" (a datetime-local value) for an instant, in `zone`. */
export function toLocalInput(ms: number, zone: string): string {
  return new Date(toWallClock(ms, zone)).toISOString().slice(0, 19);
}

/** The instant of a datetime-local value read in `zone`; undefined for an empty or bad value. */
export function fromLocalInput(value: string, zone: string): number | undefined {
  if (!value) return undefined;
  const wall = Date.parse(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isNaN(wall) ? undefined : fromWallClock(wall, zone);
}

/** Start of the day containing `ms` in `zone`, and of the next day. */
export function dayBounds(ms: number, zone: string): [number, number] {
  const wall = toWallClock(ms, zone);
  const start = wall - (wall % 86_400_000);
  return [fromWallClock(start, zone), fromWallClock(start + 86_400_000, zone)];
}

export function formatInstant(ms: number, zone: string): string {
  return new Intl.DateTimeFormat(undefined, { timeZone: zone, dateStyle: "medium", timeStyle: "short" }).format(
    new Date(ms),
  );
}

/** A wall-clock (fake UTC) date for display, e.g. an RRULE preview occurrence. */
export function formatWall(wall: Date): string {
  return new Intl.DateTimeFormat(undefined, {
    timeZone: "UTC",
    weekday: "short",
    dateStyle: undefined,
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(wall);
}

export const tsMs = (t: Timestamp | undefined): number | undefined => (t ? timestampDate(t).getTime() : undefined);
export const msTs = (ms: number): Timestamp => timestampFromMs(ms);

export function isValidZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
