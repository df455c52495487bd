// What the payload generators share: how a case is shaped (every field fuzzed, or one), which
// fields are present, how long lists are.
import { type DescField, ScalarType } from "@bufbuild/protobuf";
import type { Rng } from "./prng.js";
import { type Rules, rulesOf } from "./schema.js";

/** Nesting kept below this depth (deeper messages are sent empty). */
export const MAX_DEPTH = 3;

/**
 * `wild`: every field fuzzed. `oneBadField`: only fields named `target` get fuzz values, every
 * other field a sane one, so the request gets past the others' validation into the service.
 */
export type Mode = { kind: "wild" } | { kind: "oneBadField"; target: string };

export function present(rng: Rng, f: DescField, mode: Mode): boolean {
  const r = rulesOf(f);
  if (mode.kind === "wild") return rng.chance(r.required ? 0.9 : 0.65);
  // Well-formed: what the rules demand is there, the rest mostly.
  return f.name === mode.target || r.required || (r.minLen ?? 0) > 0 || (r.minItems ?? 0) > 0 || rng.chance(0.8);
}

export const fuzzed = (f: DescField, mode: Mode) => mode.kind === "wild" || f.name === mode.target;

export function listLength(rng: Rng, rules: Rules, labels: string[], f: DescField): number {
  const n = rng.pick([
    0,
    1,
    2,
    rng.int(0, 5),
    rules.maxItems ?? 3,
    (rules.maxItems ?? 3) + 1,
    rules.minItems !== undefined ? Math.max(0, rules.minItems - 1) : 0,
    // Many items: thousands of numbers, a few hundred strings or messages (each may be large).
    rng.chance(0.2)
      ? f.fieldKind === "list" && f.listKind !== "scalar"
        ? 300
        : f.scalar === ScalarType.STRING
          ? 300
          : 5000
      : 4,
  ]);
  if (n > (rules.maxItems ?? Number.POSITIVE_INFINITY)) labels.push(`items>${rules.maxItems}(${f.name})`);
  return n;
}
