// Protobuf binary encoding by hand (https://protobuf.dev/programming-guides/encoding/), so the
// fuzzer can write what a well-behaved encoder never would: invalid UTF-8 in string fields,
// out-of-range and over-long varints, wrong wire types, lengths that overrun the message.

export const WT = { varint: 0, i64: 1, len: 2, sgroup: 3, egroup: 4, i32: 5 } as const;

/** Base-128 varint of the low 64 bits of `n` (negative numbers as two's complement: 10 bytes). */
export function varint(n: bigint | number): Uint8Array {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** A varint padded with continuation bytes to `len` bytes (11+ is malformed: more than 64 bits). */
export function overlongVarint(n: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let v = n;
  for (let i = 0; i < len; i++) {
    out[i] = (v & 0x7f) | (i < len - 1 ? 0x80 : 0);
    v = Math.floor(v / 128);
  }
  return out;
}

export function zigzag(n: bigint): bigint {
  return BigInt.asUintN(64, (n << 1n) ^ (n >> 63n));
}

export function tag(fieldNo: number, wireType: number): Uint8Array {
  return varint((BigInt(fieldNo) << 3n) | BigInt(wireType));
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const len = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function lenField(fieldNo: number, payload: Uint8Array): Uint8Array {
  return concat([tag(fieldNo, WT.len), varint(payload.length), payload]);
}

export function varintField(fieldNo: number, n: bigint | number): Uint8Array {
  return concat([tag(fieldNo, WT.varint), varint(n)]);
}

export function fixed32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

export function fixed64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return b;
}

export function float32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, n, true);
  return b;
}

export function float64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, n, true);
  return b;
}

/** Byte sequences that are not UTF-8 (RFC 3629 §3, and the Unicode table of well-formed sequences). */
export const INVALID_UTF8: readonly Uint8Array[] = [
  Uint8Array.of(0xff),
  Uint8Array.of(0xfe, 0xff),
  Uint8Array.of(0xc0, 0x80), // over-long NUL
  Uint8Array.of(0xc3), // truncated 2-byte sequence
  Uint8Array.of(0xe2, 0x82), // truncated 3-byte sequence
  Uint8Array.of(0xed, 0xa0, 0x80), // UTF-16 surrogate encoded in UTF-8
  Uint8Array.of(0xf4, 0x90, 0x80, 0x80), // above U+10FFFF
  Uint8Array.of(0x80), // lone continuation byte
  Uint8Array.of(0xf8, 0x88, 0x80, 0x80, 0x80), // 5-byte form
];

/** The 5-byte gRPC / Connect envelope: flags, then a big-endian length (which may lie). */
export function envelope(flags: number, payload: Uint8Array, declaredLength = payload.length): Uint8Array {
  const head = new Uint8Array(5);
  head[0] = flags;
  new DataView(head.buffer).setUint32(1, declaredLength >>> 0, false);
  return concat([head, payload]);
}
