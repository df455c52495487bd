// Request messages in proto3 JSON, written by hand as text so they can be wrong in ways a
// protobuf library would refuse to produce: wrong types, unknown and duplicate keys, malformed
// or huge bodies. `labels` collects a short note of every oddity put in, for the report.
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { fuzzed, listLength, MAX_DEPTH, type Mode, present } from "./payload-mode.js";
import type { Rng } from "./prng.js";
import { type Rules, rulesOf } from "./schema.js";
import {
  DURATION_JSON,
  enumValue,
  HUGE_BYTES,
  intValue,
  SANE_DURATION,
  SANE_TIMESTAMP,
  saneScalar,
  stringValue,
  TIMESTAMP_JSON,
} from "./values.js";
import { concat, INVALID_UTF8 } from "./wire.js";

const enc = new TextEncoder();

/** JSON values of every type, for a field that expects another one. */
const WRONG_JSON = [
  "null",
  "true",
  "0",
  "-1",
  "1.5",
  '"x"',
  "[]",
  "{}",
  '[1,"a",null]',
  '{"a":1}',
  "1e400",
  "-0",
  '"\\u0000"',
];

/** The sane JSON for a field (see saneScalar). */
function saneJsonField(rng: Rng, f: DescField, mode: Mode, labels: string[], depth: number): string {
  const rules = rulesOf(f);
  const one = (): string => {
    const m = f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") ? f.message : undefined;
    if (m?.typeName === "google.protobuf.Timestamp") return JSON.stringify(SANE_TIMESTAMP.json);
    if (m?.typeName === "google.protobuf.Duration") return JSON.stringify(SANE_DURATION.json);
    if (m) return depth >= MAX_DEPTH ? "{}" : jsonMessage(rng, m, labels, depth + 1, mode);
    return JSON.stringify(saneScalar(rng, f, f.fieldKind === "list" ? (rules.items ?? {}) : rules));
  };
  if (f.fieldKind === "list") return `[${one()}]`;
  if (f.fieldKind === "map") return "{}";
  return one();
}

/** A proto3 JSON object for `msg` (as text), possibly with wrong types and unknown keys. */
export function jsonMessage(
  rng: Rng,
  msg: DescMessage,
  labels: string[],
  depth = 0,
  mode: Mode = { kind: "wild" },
): string {
  const entries: string[] = [];
  for (const f of msg.fields) {
    if (!present(rng, f, mode)) continue;
    if (!fuzzed(f, mode)) {
      entries.push(`${JSON.stringify(f.jsonName)}:${saneJsonField(rng, f, mode, labels, depth)}`);
      continue;
    }
    const key = rng.weighted([
      [17, f.jsonName],
      [2, f.name],
      [1, f.jsonName.toUpperCase()],
    ]);
    entries.push(`${JSON.stringify(key)}:${jsonField(rng, f, labels, depth)}`);
  }
  if (mode.kind === "oneBadField") return `{${entries.join(",")}}`;
  if (rng.chance(0.1)) {
    const k = rng.pick(['"fuzzUnknownField"', '"__proto__"', '"constructor"', '"@type"', '"prototype"']);
    const v = rng.pick(['{"polluted":true}', "1", '"x"', '{"prototype":{"polluted":true}}', "null"]);
    labels.push(`json:unknown-key ${k}`);
    entries.push(`${k}:${v}`);
  }
  if (entries.length > 0 && rng.chance(0.03)) {
    labels.push("json:duplicate-key");
    entries.push(entries[0] as string);
  }
  rng.chance(0.5) && entries.reverse();
  return `{${entries.join(",")}}`;
}

function jsonField(rng: Rng, f: DescField, labels: string[], depth: number): string {
  if (rng.chance(0.1)) {
    labels.push(`json:wrong-type(${f.name})`);
    return rng.pick(WRONG_JSON);
  }
  const rules = rulesOf(f);
  if (f.fieldKind === "list") {
    const n = listLength(rng, rules, labels, f);
    const items: string[] = [];
    for (let i = 0; i < n; i++) items.push(jsonSingle(rng, f, rules.items ?? {}, labels, depth));
    return `[${items.join(",")}]`;
  }
  if (f.fieldKind === "map") return rng.pick(["{}", '{"k":"v"}', '{"":null}']);
  return jsonSingle(rng, f, rules, labels, depth);
}

function jsonSingle(rng: Rng, f: DescField, rules: Rules, labels: string[], depth: number): string {
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) {
    const e = enumValue(rng, f);
    if (e.label !== "defined") labels.push(`enum:${e.label}(${f.name})=${e.n}`);
    return rng.weighted([
      [3, e.name ? JSON.stringify(e.name) : String(e.n)],
      [2, String(e.n)],
      [1, '"NOT_A_VALUE"'],
    ]);
  }
  const message =
    f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
  if (message) return jsonSubMessage(rng, message, labels, depth + 1, f.name);
  const scalar = f.fieldKind === "scalar" || f.fieldKind === "list" ? f.scalar : undefined;
  return jsonScalar(rng, f, scalar ?? ScalarType.STRING, rules, labels);
}

function jsonSubMessage(rng: Rng, m: DescMessage, labels: string[], depth: number, name: string): string {
  switch (m.typeName) {
    case "google.protobuf.Timestamp":
      return JSON.stringify(rng.pick(TIMESTAMP_JSON));
    case "google.protobuf.Duration":
      return JSON.stringify(rng.pick(DURATION_JSON));
    case "google.protobuf.FieldMask":
      return JSON.stringify(rng.pick(["title", "title,notes", "", "no_such_field", "a..b"]));
  }
  if (depth > MAX_DEPTH) return "{}";
  if (rng.chance(0.03)) {
    labels.push(`json:null-message(${name})`);
    return "null";
  }
  // Inside a fuzzed message field, everything is fuzzed.
  return jsonMessage(rng, m, labels, depth, { kind: "wild" });
}

function jsonScalar(rng: Rng, f: DescField, t: ScalarType, rules: Rules, labels: string[]): string {
  switch (t) {
    case ScalarType.STRING: {
      const s = stringValue(rng, f, rules);
      if (s.label !== "text") labels.push(`string:${s.label}(${f.name})`);
      // JSON cannot carry bytes that are not UTF-8 inside a string; a lone surrogate escape is its nearest kin.
      return s.invalidUtf8 ? `"x\\ud800y"` : JSON.stringify(s.text);
    }
    case ScalarType.BOOL:
      return rng.pick(["true", "false", '"true"', "1"]);
    case ScalarType.BYTES:
      return rng.pick(['""', '"AAEC"', '"_-8"', '"!!!"', '"AAE="', '"A"']);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return rng.pick(["0", "-0", "1.5", '"NaN"', '"Infinity"', '"-Infinity"', "1e308", "3.5e38", '"abc"', "1e-400"]);
    default: {
      const bits =
        t === ScalarType.INT64 ||
        t === ScalarType.UINT64 ||
        t === ScalarType.SINT64 ||
        t === ScalarType.FIXED64 ||
        t === ScalarType.SFIXED64
          ? 64
          : 32;
      const unsigned =
        t === ScalarType.UINT32 || t === ScalarType.UINT64 || t === ScalarType.FIXED32 || t === ScalarType.FIXED64;
      const { v, label } = intValue(rng, rules, bits, unsigned);
      labels.push(`int:${label}(${f.name})=${v}`);
      return rng.weighted([
        [5, v.toString()],
        [3, JSON.stringify(v.toString())],
        [1, rng.pick(['"0x10"', '"1e2"', '" 1"', '""', "1.5", '"1.0"', "1e2"])],
      ]);
    }
  }
}

/** A whole JSON body, sometimes malformed or huge. */
export function jsonBody(rng: Rng, msg: DescMessage, labels: string[], mode: Mode = { kind: "wild" }): Uint8Array {
  const text = jsonMessage(rng, msg, labels, 0, mode);
  if (mode.kind === "oneBadField") return enc.encode(text);
  const mutation = rng.weighted([
    [70, "none"],
    [10, "malformed"],
    [6, "not-an-object"],
    [3, "deep-nesting"],
    [3, "invalid-utf8-bytes"],
    [3, "huge"],
    [3, "empty"],
    [2, "bom"],
  ] as const);
  if (mutation === "none") return enc.encode(text);
  labels.push(`json-body:${mutation}`);
  switch (mutation) {
    case "malformed": {
      const m = rng.pick([
        () => text.slice(0, rng.int(0, Math.max(0, text.length - 1))),
        () => `${text.slice(0, -1)},}`,
        () => text.replaceAll('"', "'"),
        () => `${text}garbage`,
        () => `${text}{}`,
        () => `/* c */${text}`,
        () => text.replace("{", "{NaN:"),
        () => `{"a":${"9".repeat(400)}}`,
        () => "{,}",
      ]);
      return enc.encode(m());
    }
    case "not-an-object":
      return enc.encode(rng.pick(["null", "[]", '"str"', "123", "true", "[{}]"]));
    case "deep-nesting": {
      const n = rng.pick([100, 10_000, 100_000]);
      return enc.encode(`{"x":${"[".repeat(n)}${"]".repeat(n)}}`);
    }
    case "invalid-utf8-bytes":
      return concat([
        enc.encode(text.slice(0, -1) + (text.length > 2 ? "," : "")),
        enc.encode('"k":"'),
        rng.pick(INVALID_UTF8),
        enc.encode('"}'),
      ]);
    case "huge":
      return enc.encode(`{"fuzzPadding":"${"p".repeat(HUGE_BYTES)}"}`);
    case "empty":
      return new Uint8Array(0);
    case "bom":
      return concat([Uint8Array.of(0xef, 0xbb, 0xbf), enc.encode(text)]);
  }
}
