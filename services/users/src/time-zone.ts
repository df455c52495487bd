// An IANA name: Area/Location[/Sub], or a single word such as "UTC" or "EST". Offsets such as
// "+01:00" (which newer V8 versions accept as a DateTimeFormat time zone) are not IANA names.
const IANA_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

/**
 * The canonical IANA time zone for `name`, or undefined when the runtime's IANA database (ICU)
 * does not know it. Matching is case-insensitive and links resolve to their target, as ICU
 * does: "europe/paris" → "Europe/Paris", "US/Eastern" → "America/New_York", "Etc/UTC" → "UTC"
 * (ICU's canonical form; it can change across Node versions for a few links, and either form stays valid).
 * Storing the canonical name means every service computing local times agrees on the zone.
 */
export function canonicalTimeZone(name: string): string | undefined {
  if (!IANA_NAME.test(name)) return undefined;
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}
