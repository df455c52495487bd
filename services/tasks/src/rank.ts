import { generateKeyBetween } from "fractional-indexing";

/**
 * A rank (fractional-indexing key) that sorts strictly between `before` and `after` (null = open
 * end). Ranks compare as plain strings (SQLite's BINARY collation), so placing an item between two
 * neighbours writes only that item's row. Keys grow by about one character per insertion at the
 * same spot, which stays short for the moves a person makes by hand.
 */
export function rankBetween(before: string | null, after: string | null): string {
  return generateKeyBetween(before || null, after || null);
}
