import { generateKeyBetween, generateNKeysBetween } from "fractional-indexing";

/**
 * A rank (fractional-indexing key) that sorts strictly between `before` and `after` (null = open
 * end). Ranks compare as plain strings (SQLite's BINARY collation), so placing an item between two
 * neighbours writes only that item's row. Keys grow by about one character per insertion at the
 * same spot, which stays short for the moves a person makes by hand.
 */
export function rankBetween(before: string | null, after: string | null): string {
  return generateKeyBetween(before || null, after || null);
}

/**
 * Longest rank a move may leave behind. Moves that keep landing in the same gap lengthen the key by
 * about one character per six moves (scripts/bench/organize-bench.mjs measured 169 characters after
 * 1,000 before this limit existed); past it the siblings are renumbered (ranksFor), order kept.
 */
export const MAX_RANK_LENGTH = 48;

/** `n` short ranks in ascending order (a renumbering of siblings). */
export function ranksFor(n: number): string[] {
  return generateNKeysBetween(null, null, n);
}
