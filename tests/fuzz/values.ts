// Pools of values per field: boundary values derived from the buf.validate rules, values that
// look right for the field's name (so some requests pass validation and reach the services'
// own code: RRULEs, time zones, FTS5 queries, page tokens), and classic hostile strings.
import type { DescField } from "@bufbuild/protobuf";
import type { Rng } from "./prng.js";
import type { Rules } from "./schema.js";

/** A string value; `invalidUtf8` asks the binary encoder to splice bytes that are not UTF-8 into it. */
export interface StringValue {
  text: string;
  invalidUtf8?: boolean;
  label: string;
}

/** Above the 1 MiB message limit of the edge and the backends. */
export const HUGE_BYTES = 1024 * 1024 + 64 * 1024;

const HOSTILE = [
  "' OR '1'='1",
  "'); DROP TABLE tasks; --",
  '" OR ""="',
  "%s%s%s%n",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4shell-style payload, literally.
  "${jndi:ldap://127.0.0.1/a}",
  "{{7*7}}",
  "../../../../etc/passwd",
  "<script>alert(1)</script>",
  "\u0000",
  "a\u0000b",
  "\r\nx-injected: 1",
  "\u202e\u0645\u0631\u062d\u0628\u0627",
  "\ud83d\ude00",
  "\ud800", // lone surrogate (JSON \ud800; UTF-8 encoders write U+FFFD)
  "\udfff\ud800",
  "\uffff\ufffe",
  "Z\u0351\u0360\u036b\u0309\u0334",
  "__proto__",
  "constructor",
  "NaN",
  " ",
  "\t\n",
];

const TIME_ZONES = [
  "Europe/Paris",
  "UTC",
  "America/New_York",
  "Pacific/Kiritimati",
  "Etc/GMT+12",
  "Etc/GMT-14",
  "EST5EDT",
  "Mars/Olympus_Mons",
  "europe/paris",
  "Europe/Paris ",
  "localtime",
  "posixrules",
  "Factory",
  "+05:00",
  "../../../../etc/passwd",
  "America/Argentina/ComodRivadavia",
];

const RRULES = [
  "FREQ=WEEKLY;BYDAY=MO",
  "RRULE:FREQ=DAILY;COUNT=5",
  "FREQ=DAILY;INTERVAL=2;UNTIL=20301231T000000Z",
  "FREQ=MONTHLY;BYDAY=-1FR",
  "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
  "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
  "FREQ=SECONDLY",
  "FREQ=SECONDLY;INTERVAL=1;COUNT=100000000",
  "FREQ=MINUTELY;BYSECOND=60",
  "FREQ=DAILY;INTERVAL=0",
  "FREQ=DAILY;INTERVAL=-1",
  "FREQ=DAILY;COUNT=-1",
  "FREQ=DAILY;INTERVAL=99999999999999999999",
  "FREQ=DAILY;UNTIL=19700101T000000Z",
  "FREQ=DAILY;UNTIL=99991231T235959Z",
  "FREQ=MONTHLY;BYSETPOS=0;BYDAY=MO",
  "FREQ=WEEKLY;BYDAY=XX",
  "FREQ=WEEKLY;WKST=ZZ",
  "FREQ=",
  "FREQ=SOMETIMES",
  "RRULE:",
  "FREQ=DAILY\nEXDATE:20300101T000000Z",
  "FREQ=DAILY\nEXDATE;TZID=Europe/Paris:20300101T090000",
  "FREQ=DAILY\nEXDATE:not-a-date",
  "FREQ=DAILY\r\nRRULE:FREQ=WEEKLY",
  "DTSTART:20300101T000000Z\nRRULE:FREQ=DAILY",
  "FREQ=DAILY;BYHOUR=25",
  "FREQ=HOURLY;BYYEARDAY=366;BYWEEKNO=53",
];

/** FTS5 query syntax (https://sqlite.org/fts5.html#full_text_query_syntax) and things that break naive quoting. */
const SEARCH_QUERIES = [
  "review",
  "weekly review",
  '"',
  '""',
  "'",
  "*",
  "a*",
  "AND",
  "OR NOT",
  "NOT",
  "NEAR(a b, 2)",
  "title:x",
  "^start",
  "-x",
  "(",
  ")",
  'a"b',
  "{a b}: c",
  "a + b",
  "\u0000",
  "🙂",
  "x".repeat(200),
];

const EMAILS = [
  "fuzz@example.com",
  "FUZZ@EXAMPLE.COM",
  "a@b",
  "@example.com",
  "fuzz@",
  "fuzz@@example.com",
  "fuzz example@example.com",
  "fuzz@example.com\u0000",
  `${"a".repeat(64)}@${"b".repeat(185)}.com`,
  `${"a".repeat(65)}@example.com`,
  '"quoted local"@example.com',
  "fuzz@[127.0.0.1]",
  "ü@exämple.com",
];

const URLS = [
  "https://example.com/hook",
  "http://127.0.0.1:1/x",
  "http://169.254.169.254/latest/meta-data/",
  "http://[::1]:8080/",
  "file:///etc/passwd",
  "javascript:alert(1)",
  "https://",
  "ftp://example.com",
  `https://example.com/${"a".repeat(2030)}`,
  `https://example.com/${"a".repeat(2040)}`,
];

const PAGE_TOKENS = [
  "",
  "abc",
  "eyJvZmZzZXQiOi0xfQ",
  "AAAA",
  "=",
  "%%%",
  "null",
  "-1",
  "0",
  "x".repeat(512),
  "x".repeat(513),
];

const UUIDS = (rng: Rng) => [
  rng.uuid(),
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
  rng.uuid().toUpperCase(),
  `{${rng.uuid()}}`,
  rng.uuid().replaceAll("-", ""),
  `${rng.uuid()}0`,
  rng.uuid().slice(0, 35),
  "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
  "not-a-uuid",
  "",
  ` ${rng.uuid()}`,
  `${rng.uuid()}\u0000`,
];

/** A string for `field` given its rules. */
export function stringValue(rng: Rng, field: DescField, rules: Rules): StringValue {
  const name = field.name;
  const max = rules.maxLen;
  const min = rules.minLen;
  const kinds: Array<readonly [number, () => StringValue]> = [
    [3, () => ({ text: "", label: "empty" })],
    [3, () => ({ text: rng.pick(HOSTILE), label: "hostile" })],
    [2, () => ({ text: "x", invalidUtf8: true, label: "invalid-utf8" })],
    [1, () => ({ text: "y".repeat(rng.pick([1000, 65_536, 300_000])), label: "long" })],
    [0.3, () => ({ text: "h".repeat(HUGE_BYTES), label: "huge>1MiB" })],
  ];
  if (max !== undefined) {
    kinds.push(
      [2, () => ({ text: "m".repeat(max), label: "max_len" })],
      [2, () => ({ text: "m".repeat(max + 1), label: "max_len+1" })],
      // max_len counts characters, not bytes: 4 bytes each in UTF-8, 2 UTF-16 units in JS.
      [1, () => ({ text: "😀".repeat(max), label: "max_len(4-byte chars)" })],
      [1, () => ({ text: "😀".repeat(max + 1), label: "max_len+1(4-byte chars)" })],
    );
  }
  if (min !== undefined && min > 0) kinds.push([1, () => ({ text: "n".repeat(min - 1), label: "min_len-1" })]);
  if (rules.uuid || /(^|_)id$/.test(name)) kinds.push([8, () => ({ text: rng.pick(UUIDS(rng)), label: "uuid-ish" })]);
  if (rules.email || /email/.test(name)) kinds.push([8, () => ({ text: rng.pick(EMAILS), label: "email-ish" })]);
  if (/time_zone/.test(name)) kinds.push([8, () => ({ text: rng.pick(TIME_ZONES), label: "zone" })]);
  if (/recurrence/.test(name)) kinds.push([10, () => ({ text: rng.pick(RRULES), label: "rrule" })]);
  if (/query/.test(name)) kinds.push([10, () => ({ text: rng.pick(SEARCH_QUERIES), label: "fts" })]);
  if (/url/.test(name)) kinds.push([8, () => ({ text: rng.pick(URLS), label: "url" })]);
  if (/page_token/.test(name)) kinds.push([8, () => ({ text: rng.pick(PAGE_TOKENS), label: "page-token" })]);
  if (/password/.test(name)) kinds.push([6, () => ({ text: `fuzz-${rng.int(0, 1e9)}-pw`, label: "password" })]);
  if (/title|notes|body/.test(name)) kinds.push([6, () => ({ text: `fuzz ${rng.int(0, 1e6)}`, label: "text" })]);
  if (/idempotency_key/.test(name)) kinds.push([6, () => ({ text: rng.uuid(), label: "key" })]);
  return rng.weighted(kinds)();
}

/** An integer for a field of an integer type (bigint, so 64-bit values survive). */
export function intValue(rng: Rng, rules: Rules, bits: 32 | 64, unsigned: boolean): { v: bigint; label: string } {
  const lim = (b: number) => 2n ** BigInt(b);
  const pool: Array<[bigint, string]> = [
    [0n, "zero"],
    [1n, "one"],
    [-1n, "negative"],
    [BigInt(rng.int(0, 1000)), "small"],
    [unsigned ? lim(bits) - 1n : lim(bits - 1) - 1n, "max"],
    [unsigned ? 0n : -lim(bits - 1), "min"],
    [lim(bits), "overflow"],
    [-lim(bits - 1) - 1n, "underflow"],
    [lim(63) - 1n, "int64-max"],
    [-lim(63), "int64-min"],
  ];
  if (rules.min !== undefined) pool.push([BigInt(rules.min), "rule-min"], [BigInt(rules.min) - 1n, "rule-min-1"]);
  if (rules.max !== undefined) pool.push([BigInt(rules.max), "rule-max"], [BigInt(rules.max) + 1n, "rule-max+1"]);
  const [v, label] = rng.pick(pool);
  return { v, label };
}

export function enumValue(rng: Rng, field: DescField): { n: number; name?: string; label: string } {
  const e = field.enum;
  const values = e?.values ?? [];
  return rng.weighted<{ n: number; name?: string; label: string }>([
    [
      4,
      (() => {
        const v = values.length > 0 ? rng.pick(values) : undefined;
        return v ? { n: v.number, name: v.name, label: "defined" } : { n: 0, label: "zero" };
      })(),
    ],
    [1, { n: 0, label: "zero" }],
    [3, { n: rng.pick([99, 7, -1, 2147483647, -2147483648]), label: "unknown-number" }],
  ]);
}

/** RFC 3339 strings and out-of-range instants for google.protobuf.Timestamp. */
export const TIMESTAMP_JSON = [
  "2030-01-07T08:00:00Z",
  "2030-01-07T08:00:00.123456789Z",
  "2030-01-07T08:00:00+05:30",
  "0001-01-01T00:00:00Z",
  "9999-12-31T23:59:59.999999999Z",
  "0000-12-31T23:59:59Z",
  "10000-01-01T00:00:00Z",
  "1970-01-01T00:00:00Z",
  "2030-02-30T00:00:00Z",
  "2030-01-07T25:00:00Z",
  "2030-01-07",
  "not-a-date",
  "",
  "2030-01-07T08:00:00.1234567891Z",
];

/** (seconds, nanos) pairs for a binary Timestamp, inside and outside the valid range. */
export const TIMESTAMP_BIN: ReadonlyArray<readonly [bigint, bigint]> = [
  [1893916800n, 0n],
  [0n, 0n],
  [-62135596800n, 0n], // 0001-01-01
  [-62135596801n, 0n], // before the range
  [253402300799n, 999999999n], // 9999-12-31T23:59:59.999999999
  [253402300800n, 0n], // after the range
  [2n ** 62n, 0n],
  [1893916800n, -1n],
  [1893916800n, 1000000000n],
  [-(2n ** 63n), 0n],
];

export const DURATION_JSON = [
  "900s",
  "0s",
  "2592000s",
  "2592001s",
  "-1s",
  "1.5s",
  "0.000000001s",
  "315576000001s",
  "s",
  "15m",
  "",
  "1e3s",
];

export const DURATION_BIN: ReadonlyArray<readonly [bigint, bigint]> = [
  [900n, 0n],
  [0n, 0n],
  [2592000n, 0n],
  [2592000n, 1n],
  [-1n, 0n],
  [1n, -1n], // mixed signs: invalid
  [315576000001n, 0n],
  [0n, 1000000000n],
  [2n ** 63n - 1n, 0n],
];

/**
 * A value a well-behaved client would send for this field (for the "one bad field" cases: every
 * other field sane, so the request reaches the service's own code). JSON-shaped: string, number,
 * boolean; Timestamp/Duration as their JSON strings.
 */
export function saneScalar(rng: Rng, field: DescField, rules: Rules): string | number | boolean {
  const name = field.name;
  if (field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum")) {
    const defined = (field.enum?.values ?? []).filter((v) => v.number !== 0);
    return defined.length > 0 ? rng.pick(defined).number : 0;
  }
  const scalar =
    field.fieldKind === "scalar"
      ? field.scalar
      : field.fieldKind === "list" && field.listKind === "scalar"
        ? field.scalar
        : undefined;
  if (scalar === undefined) return "";
  if (scalar === 8 /* BOOL */) return rng.chance(0.5);
  if (scalar !== 9 /* STRING */) {
    const lo = rules.min ?? 0;
    const hi = rules.max ?? 10;
    return rng.int(lo, Math.max(lo, Math.min(hi, lo + 50)));
  }
  if (rules.uuid || /(^|_)ids?$/.test(name)) return rng.uuid();
  if (rules.email || /email/.test(name)) return `fuzz-${rng.uuid().slice(0, 8)}@example.com`;
  if (/time_zone/.test(name)) return rng.pick(["Europe/Paris", "UTC", "America/New_York", "Asia/Kolkata"]);
  if (/recurrence/.test(name))
    return rng.pick(["", "FREQ=WEEKLY;BYDAY=MO", "RRULE:FREQ=DAILY;COUNT=5", "FREQ=MONTHLY;BYMONTHDAY=31"]);
  if (/query/.test(name)) return rng.pick(["fuzz", "task", "review"]);
  if (/password/.test(name)) return `fuzz-${rng.int(0, 1e9)}-pw`;
  if (/idempotency_key/.test(name)) return rng.uuid();
  if (/url/.test(name) || /page_token/.test(name)) return "";
  return `fuzz ${rng.int(0, 1e6)}`;
}

export const SANE_TIMESTAMP = { json: "2030-01-07T08:00:00Z", seconds: 1893916800n, nanos: 0n };
export const SANE_DURATION = { json: "900s", seconds: 900n, nanos: 0n };
