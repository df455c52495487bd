// fast-check arbitraries built from the generated descriptors: a proto3 JSON body for any message,
// every field of every kind (scalars at their edges, enums by name, number and nonsense, repeated
// and map fields, nested messages to a bounded depth, the well-known types), with the fields
// whose meaning the services check themselves drawn from their own grammars: RRULEs (never-
// matching ones included), time zones, webhook URLs (private addresses included), emails.
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import fc from "fast-check";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const MAX_DEPTH = 4;

/** Strings at their edges: empty, blank, unicode, control characters, long, injection-shaped. */
const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", "\u0000", "'; DROP TABLE tasks;--", "../../etc/passwd", "%s%n") },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 5000 }).map((n) => "x".repeat(n)) },
);

const RRULE_PARTS = {
  FREQ: fc.constantFrom("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY", "SOMETIMES"),
  INTERVAL: fc.integer({ min: -1, max: 20_000 }),
  COUNT: fc.integer({ min: -1, max: 2_000_000 }),
  UNTIL: fc.constantFrom("20301231T000000Z", "20300101", "19000101T000000Z", "tomorrow"),
  BYMONTH: fc.integer({ min: 0, max: 13 }),
  BYMONTHDAY: fc.integer({ min: -32, max: 32 }),
  BYDAY: fc.constantFrom("MO", "TU,TH", "1MO", "-1FR", "XX", "SU,SA"),
  BYHOUR: fc.integer({ min: -1, max: 24 }),
  BYMINUTE: fc.integer({ min: -1, max: 60 }),
  BYSECOND: fc.integer({ min: -1, max: 61 }),
  BYYEARDAY: fc.integer({ min: -367, max: 367 }),
  BYWEEKNO: fc.integer({ min: -54, max: 54 }),
  BYSETPOS: fc.integer({ min: -367, max: 367 }),
  WKST: fc.constantFrom("MO", "SU", "ZZ"),
};

/** RRULE text: random rule parts (in and out of range), the never-matching kind, EXDATE and DTSTART lines. */
/** Rules within RFC 5545's ranges: most should be accepted (and reach the expansion). */
const plausibleRule = fc
  .record(
    {
      FREQ: fc.constantFrom("DAILY", "WEEKLY", "MONTHLY", "YEARLY", "HOURLY"),
      INTERVAL: fc.integer({ min: 1, max: 5 }),
      COUNT: fc.integer({ min: 1, max: 50 }),
      BYDAY: fc.constantFrom("MO", "TU,TH", "1MO", "-1FR", "SA,SU"),
      BYMONTHDAY: fc.integer({ min: 1, max: 28 }),
      BYHOUR: fc.integer({ min: 0, max: 23 }),
    },
    { requiredKeys: ["FREQ"] },
  )
  .map((parts) =>
    Object.entries(parts)
      .map(([k, v]) => `${k}=${v}`)
      .join(";"),
  );

export const rruleArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: plausibleRule },
  {
    weight: 5,
    arbitrary: fc.record(RRULE_PARTS, { requiredKeys: ["FREQ"] }).map((parts) =>
      Object.entries(parts)
        .map(([k, v]) => `${k}=${v}`)
        .join(";"),
    ),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.constantFrom("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "YEARLY"),
        fc.constantFrom("BYMONTH=2;BYMONTHDAY=30", "BYMONTH=4;BYMONTHDAY=31", "BYMONTH=2;BYMONTHDAY=31;BYDAY=MO"),
      )
      .map(([f, by]) => `FREQ=${f};${by}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "RRULE:FREQ=DAILY\nEXDATE:20300108T080000Z",
      "DTSTART:20300101T000000Z\nRRULE:FREQ=DAILY",
      "every monday",
      "",
    ),
  },
  { weight: 1, arbitrary: anyString },
);

export const timeZoneArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "",
      "UTC",
      "Europe/Paris",
      "europe/paris",
      "America/New_York",
      "Asia/Kathmandu",
      "Etc/GMT+14",
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom("Mars/Olympus_Mons", "+05:00", "/etc/passwd", "Europe/../../x", "x".repeat(65)),
  },
  { weight: 1, arbitrary: anyString },
);

const HOSTS = [
  "127.0.0.1",
  "localhost",
  "169.254.169.254",
  "10.0.0.1",
  "[::1]",
  "[::ffff:127.0.0.1]",
  "0.0.0.0",
  "2130706433",
  "0x7f.1",
  "[fe80::1]",
  "100.64.0.1",
  "93.184.216.34",
  "hooks.example.com",
];
export const urlArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom("http", "https", "ftp", "file", "gopher"),
      fc.constantFrom(...HOSTS),
      fc.integer({ min: 0, max: 70_000 }),
    )
    .map(([s, h, p]) => `${s}://${h}:${p}/hook`),
  fc.webUrl(),
  anyString,
);

export const emailArb: fc.Arbitrary<string> = fc.oneof(fc.emailAddress(), anyString);

/** A value for one field, by its name where the services give it meaning, else by its kind. */
function fieldValue(f: DescField, depth: number): fc.Arbitrary<Json> {
  if (f.fieldKind === "list") return fc.array(singular(f, depth), { maxLength: depth > 1 ? 3 : 20 });
  if (f.fieldKind === "map")
    return fc.dictionary(fc.string({ maxLength: 10 }), mapValue(f, depth), { maxKeys: 5 }) as fc.Arbitrary<Json>;
  return singular(f, depth);
}

function mapValue(f: DescField & { fieldKind: "map" }, depth: number): fc.Arbitrary<Json> {
  if (f.mapKind === "message") return messageArb(f.message, depth + 1);
  if (f.mapKind === "enum") return fc.oneof(fc.constantFrom(...f.enum.values.map((v) => v.name)), fc.integer());
  return scalarArb(f.scalar);
}

function singular(f: DescField, depth: number): fc.Arbitrary<Json> {
  const byName = named(f.name);
  if (byName) return byName;
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) {
    const e = f.enum;
    return fc.oneof(
      fc.constantFrom(...e.values.map((v) => v.name)),
      fc.constantFrom(...e.values.map((v) => v.number)),
      fc.integer({ min: -5, max: 1000 }),
      fc.constant("NOT_A_VALUE"),
    );
  }
  if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message"))
    return messageArb(f.message, depth + 1);
  if (f.fieldKind === "scalar" || (f.fieldKind === "list" && f.listKind === "scalar")) return scalarArb(f.scalar);
  return fc.constant(null);
}

function named(name: string): fc.Arbitrary<Json> | undefined {
  if (name === "recurrence_rule") return rruleArb;
  if (name === "time_zone") return timeZoneArb;
  if (name.endsWith("url")) return urlArb;
  if (name === "email") return emailArb;
  return undefined;
}

function scalarArb(t: ScalarType): fc.Arbitrary<Json> {
  switch (t) {
    case ScalarType.STRING:
      return anyString;
    case ScalarType.BOOL:
      return fc.oneof(fc.boolean(), fc.constantFrom("true", 1, null));
    case ScalarType.BYTES:
      return fc.oneof(fc.base64String({ maxLength: 64 }), fc.constantFrom("not base64!", ""));
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      return fc.oneof(
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.constantFrom("NaN", "Infinity", "-Infinity", "1e999"),
      );
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return fc.oneof(
        fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }).map(String),
        fc.integer(),
        fc.constantFrom("9223372036854775808", "-1", "1.5", "abc"),
      );
    default:
      return fc.oneof(fc.integer(), fc.constantFrom(2 ** 31, -(2 ** 31) - 1, 2 ** 32, 1.5, "12", "x"));
  }
}

/** A proto3 JSON object for `msg`: each field present or not, well-known types in their JSON forms. */
export function messageArb(msg: DescMessage, depth = 0): fc.Arbitrary<Json> {
  switch (msg.typeName) {
    case "google.protobuf.Timestamp":
      return fc.oneof(
        fc
          .date({ min: new Date(-62_135_596_800_000), max: new Date(253_402_300_799_999), noInvalidDate: true })
          .map((d) => d.toISOString()),
        fc.constantFrom("0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "2030-02-30T00:00:00Z", "yesterday", ""),
      );
    case "google.protobuf.Duration":
      return fc.oneof(
        fc.integer({ min: -400_000_000_000, max: 400_000_000_000 }).map((n) => `${n}s`),
        fc.constantFrom("1.5s", "-0.000000001s", "forever"),
      );
    case "google.protobuf.FieldMask":
      return fc
        .array(fc.constantFrom("title", "notes", "due_time", "nope", ""), { maxLength: 5 })
        .map((a) => a.join(","));
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
      return fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;
  }
  if (depth >= MAX_DEPTH) return fc.constant({});
  const entries: Record<string, fc.Arbitrary<Json>> = {};
  for (const f of msg.fields) entries[f.jsonName] = fieldValue(f, depth);
  return fc.record(entries, { requiredKeys: [] }) as fc.Arbitrary<Json>;
}
