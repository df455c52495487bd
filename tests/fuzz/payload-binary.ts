// Request messages in the protobuf binary format, encoded by hand (wire.ts) so they can carry
// wrong wire types, lengths that overrun, over-long varints and bytes that are not UTF-8; and the
// gRPC / Connect envelope around them, sometimes with a lying length prefix.
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { fuzzed, listLength, MAX_DEPTH, type Mode, present } from "./payload-mode.js";
import type { Rng } from "./prng.js";
import { type Rules, rulesOf } from "./schema.js";
import {
  DURATION_BIN,
  enumValue,
  HUGE_BYTES,
  intValue,
  SANE_DURATION,
  SANE_TIMESTAMP,
  type StringValue,
  saneScalar,
  stringValue,
  TIMESTAMP_BIN,
} from "./values.js";
import {
  concat,
  envelope,
  fixed32,
  fixed64,
  float32,
  float64,
  INVALID_UTF8,
  lenField,
  overlongVarint,
  tag,
  varint,
  varintField,
  WT,
  zigzag,
} from "./wire.js";

const enc = new TextEncoder();

/** The sane binary encoding of a field, tag included. */
function saneBinaryField(rng: Rng, f: DescField, mode: Mode, labels: string[], depth: number): Uint8Array {
  const rules = rulesOf(f);
  if (f.fieldKind === "map") return new Uint8Array(0);
  const m = f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") ? f.message : undefined;
  if (m) {
    const wkt =
      m.typeName === "google.protobuf.Timestamp"
        ? SANE_TIMESTAMP
        : m.typeName === "google.protobuf.Duration"
          ? SANE_DURATION
          : undefined;
    if (wkt) return lenField(f.number, concat([varintField(1, wkt.seconds), varintField(2, wkt.nanos)]));
    return lenField(f.number, depth >= MAX_DEPTH ? new Uint8Array(0) : binaryMessage(rng, m, labels, depth + 1, mode));
  }
  const v = saneScalar(rng, f, f.fieldKind === "list" ? (rules.items ?? {}) : rules);
  if (typeof v === "string") return lenField(f.number, enc.encode(v));
  if (typeof v === "boolean") return varintField(f.number, v ? 1 : 0);
  const t = f.fieldKind === "scalar" ? f.scalar : undefined;
  if (t === ScalarType.SINT32 || t === ScalarType.SINT64) return varintField(f.number, zigzag(BigInt(v)));
  if (t === ScalarType.FIXED32 || t === ScalarType.SFIXED32) return concat([tag(f.number, WT.i32), fixed32(v)]);
  if (t === ScalarType.FIXED64 || t === ScalarType.SFIXED64) return concat([tag(f.number, WT.i64), fixed64(BigInt(v))]);
  if (t === ScalarType.DOUBLE) return concat([tag(f.number, WT.i64), float64(v)]);
  if (t === ScalarType.FLOAT) return concat([tag(f.number, WT.i32), float32(v)]);
  return varintField(f.number, v);
}

/** A binary protobuf message for `msg`, with wrong wire types, lies about lengths, invalid UTF-8. */
export function binaryMessage(
  rng: Rng,
  msg: DescMessage,
  labels: string[],
  depth = 0,
  mode: Mode = { kind: "wild" },
): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of msg.fields) {
    if (!present(rng, f, mode)) continue;
    parts.push(fuzzed(f, mode) ? binaryField(rng, f, labels, depth) : saneBinaryField(rng, f, mode, labels, depth));
  }
  if (mode.kind === "oneBadField") return concat(parts);
  if (rng.chance(0.08)) {
    const no = rng.pick([1000, 19_000, 536_870_911, 15, 99]);
    const wt = rng.pick([WT.varint, WT.i64, WT.len, WT.i32, WT.sgroup]);
    labels.push(`binary:unknown-field ${no}/wt${wt}`);
    const payload =
      wt === WT.varint
        ? varint(rng.int(0, 1e6))
        : wt === WT.i64
          ? fixed64(1n)
          : wt === WT.i32
            ? fixed32(1)
            : wt === WT.len
              ? concat([varint(3), enc.encode("abc")])
              : concat([varintField(1, 1), tag(no, WT.egroup)]);
    parts.push(concat([tag(no, wt), payload]));
  }
  if (rng.chance(0.02)) {
    labels.push("binary:field-number-0");
    parts.push(concat([tag(0, WT.varint), varint(1)]));
  }
  if (rng.chance(0.02)) {
    labels.push("binary:unmatched-end-group");
    parts.push(tag(msg.fields.length > 0 ? rng.pick(msg.fields).number : 1, WT.egroup));
  }
  // Field order is free in protobuf; shuffle so parsers see any order.
  for (let i = parts.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [parts[i], parts[j]] = [parts[j] as Uint8Array, parts[i] as Uint8Array];
  }
  return concat(parts);
}

function binaryField(rng: Rng, f: DescField, labels: string[], depth: number): Uint8Array {
  if (rng.chance(0.06)) {
    const wt = rng.pick([WT.varint, WT.i64, WT.len, WT.i32]);
    labels.push(`binary:wire-type ${wt} for ${f.name}`);
    return concat([
      tag(f.number, wt),
      wt === WT.varint
        ? varint(7)
        : wt === WT.i64
          ? fixed64(7n)
          : wt === WT.i32
            ? fixed32(7)
            : concat([varint(2), Uint8Array.of(1, 2)]),
    ]);
  }
  if (rng.chance(0.03)) {
    labels.push(`binary:length-overruns(${f.name})`);
    return concat([tag(f.number, WT.len), varint(rng.pick([100, 2 ** 31, 2 ** 32 + 5])), Uint8Array.of(1, 2, 3)]);
  }
  const rules = rulesOf(f);
  if (f.fieldKind === "list") {
    const n = listLength(rng, rules, labels, f);
    const items: Uint8Array[] = [];
    const packable =
      f.listKind === "enum" ||
      (f.listKind === "scalar" && f.scalar !== ScalarType.STRING && f.scalar !== ScalarType.BYTES);
    if (packable && rng.chance(0.6)) {
      for (let i = 0; i < n; i++) items.push(binarySingleValue(rng, f, rules.items ?? {}, labels, depth).value);
      return lenField(f.number, concat(items));
    }
    for (let i = 0; i < n; i++) {
      const { wt, value } = binarySingleValue(rng, f, rules.items ?? {}, labels, depth);
      items.push(concat([tag(f.number, wt), value]));
    }
    return concat(items);
  }
  if (f.fieldKind === "map") return new Uint8Array(0);
  const { wt, value } = binarySingleValue(rng, f, rules, labels, depth);
  return concat([tag(f.number, wt), value]);
}

/** One value of `f` (a list item for repeated fields): its wire type and the bytes after the tag. */
function binarySingleValue(
  rng: Rng,
  f: DescField,
  rules: Rules,
  labels: string[],
  depth: number,
): { wt: number; value: Uint8Array } {
  const lenDelimited = (b: Uint8Array) => ({ wt: WT.len, value: concat([varint(b.length), b]) });
  if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) {
    const e = enumValue(rng, f);
    if (e.label !== "defined") labels.push(`enum:${e.label}(${f.name})=${e.n}`);
    return { wt: WT.varint, value: varint(e.n) };
  }
  const message =
    f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
  if (message) {
    if (message.typeName === "google.protobuf.Timestamp" || message.typeName === "google.protobuf.Duration") {
      const [s, n] = rng.pick(message.typeName === "google.protobuf.Timestamp" ? TIMESTAMP_BIN : DURATION_BIN);
      labels.push(`${message.name}(${f.name})=${s}s,${n}ns`);
      return lenDelimited(concat([varintField(1, s), varintField(2, n)]));
    }
    if (depth >= MAX_DEPTH) return lenDelimited(new Uint8Array(0));
    return lenDelimited(binaryMessage(rng, message, labels, depth + 1));
  }
  const t = (f.fieldKind === "scalar" || f.fieldKind === "list" ? f.scalar : undefined) ?? ScalarType.STRING;
  switch (t) {
    case ScalarType.STRING: {
      const s: StringValue = stringValue(rng, f, rules);
      if (s.label !== "text") labels.push(`string:${s.label}(${f.name})`);
      const text = enc.encode(s.text);
      if (!s.invalidUtf8) return lenDelimited(text);
      const bad = rng.pick(INVALID_UTF8);
      return lenDelimited(concat([text, bad, enc.encode("z")]));
    }
    case ScalarType.BYTES:
      return lenDelimited(rng.bytes(rng.int(0, 64)));
    case ScalarType.BOOL:
      return { wt: WT.varint, value: varint(rng.pick([0, 1, 2, 2 ** 40])) };
    case ScalarType.DOUBLE:
      return { wt: WT.i64, value: float64(rng.pick([0, -0, Number.NaN, Number.POSITIVE_INFINITY, 1e308, 1.5])) };
    case ScalarType.FLOAT:
      return { wt: WT.i32, value: float32(rng.pick([0, Number.NaN, Number.NEGATIVE_INFINITY, 3.4e38, 1.5])) };
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return {
        wt: WT.i32,
        value: fixed32(Number(BigInt.asIntN(32, intValue(rng, rules, 32, t === ScalarType.FIXED32).v))),
      };
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return { wt: WT.i64, value: fixed64(intValue(rng, rules, 64, t === ScalarType.FIXED64).v) };
    default: {
      const bits = t === ScalarType.INT64 || t === ScalarType.UINT64 || t === ScalarType.SINT64 ? 64 : 32;
      const unsigned = t === ScalarType.UINT32 || t === ScalarType.UINT64;
      const { v, label } = intValue(rng, rules, bits, unsigned);
      labels.push(`int:${label}(${f.name})=${v}`);
      if (rng.chance(0.05)) {
        const len = rng.pick([10, 11, 12]);
        labels.push(`binary:varint-${len}-bytes(${f.name})`);
        return { wt: WT.varint, value: overlongVarint(Number(v & 0xffffn), len) };
      }
      const zz = t === ScalarType.SINT32 || t === ScalarType.SINT64;
      return { wt: WT.varint, value: varint(zz ? zigzag(v) : v) };
    }
  }
}

/** A whole binary body, sometimes truncated, random, bit-flipped or huge. */
export function binaryBody(rng: Rng, msg: DescMessage, labels: string[], mode: Mode = { kind: "wild" }): Uint8Array {
  const valid = binaryMessage(rng, msg, labels, 0, mode);
  if (mode.kind === "oneBadField") return valid;
  const mutation = rng.weighted([
    [60, "none"],
    [12, "truncated"],
    [8, "random-bytes"],
    [8, "bit-flips"],
    [5, "trailing-garbage"],
    [4, "empty"],
    [3, "huge"],
  ] as const);
  if (mutation === "none") return valid;
  labels.push(`binary-body:${mutation}`);
  switch (mutation) {
    case "truncated":
      return valid.slice(0, valid.length > 1 ? rng.int(1, valid.length - 1) : 0);
    case "random-bytes":
      return rng.bytes(rng.pick([1, 2, 5, 16, 100, 4096]));
    case "bit-flips": {
      const out = valid.slice();
      for (let i = 0; i < Math.max(1, out.length >> 4); i++) {
        if (out.length === 0) break;
        const at = rng.int(0, out.length - 1);
        out[at] = (out[at] as number) ^ (1 << rng.int(0, 7));
      }
      return out;
    }
    case "trailing-garbage":
      return concat([valid, rng.bytes(rng.int(1, 8))]);
    case "empty":
      return new Uint8Array(0);
    case "huge":
      return concat([valid, lenField(19_999, new Uint8Array(HUGE_BYTES))]);
  }
}

/** gRPC / gRPC-Web / Connect-streaming framing around `payload`, sometimes with a lying prefix. */
export function framed(rng: Rng, payload: Uint8Array, labels: string[]): Uint8Array {
  const mutation = rng.weighted([
    [72, "none"],
    [5, "length-too-long"],
    [4, "length-too-short"],
    [3, "length-4GiB"],
    [4, "compressed-flag-without-encoding"],
    [3, "unknown-flags"],
    [3, "two-messages"],
    [3, "no-message"],
    [3, "truncated-prefix"],
  ] as const);
  if (mutation === "none") return envelope(0, payload);
  labels.push(`frame:${mutation}`);
  switch (mutation) {
    case "length-too-long":
      return envelope(0, payload, payload.length + rng.pick([1, 10, 100_000]));
    case "length-too-short":
      return envelope(0, payload, Math.max(0, payload.length - rng.int(1, 5)));
    case "length-4GiB":
      return envelope(0, payload, 0xffffffff);
    case "compressed-flag-without-encoding":
      return envelope(1, payload);
    case "unknown-flags":
      return envelope(rng.pick([0x02, 0x04, 0x80, 0xff]), payload);
    case "two-messages":
      return concat([envelope(0, payload), envelope(0, payload)]);
    case "no-message":
      return new Uint8Array(0);
    case "truncated-prefix":
      return envelope(0, payload).slice(0, rng.int(1, 4));
  }
}
