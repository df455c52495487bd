/**
 * Turns what a user typed into an FTS5 MATCH expression: every word must match (implicit AND), each
 * as a prefix (`"word"*`), and nothing the user types is FTS5 syntax. Words are split the way the
 * table's unicode61 tokenizer splits text (letters and digits; everything else separates), so a
 * query for `don't` looks for the tokens `don` and `t` exactly as the indexed text was cut. Each
 * token is then double-quoted (a quote inside doubled, https://sqlite.org/fts5.html#fts5_strings),
 * so `AND`, `NEAR`, `(`, `"`, `*`, `:` and `^` are searched for as plain words or dropped.
 *
 * Returns undefined when no word is left (e.g. the query was `"(`): such a query matches nothing.
 */
export function ftsQuery(input: string): string | undefined {
  const tokens = input.normalize("NFKC").match(/[\p{L}\p{N}\p{M}\p{Co}]+/gu) ?? [];
  if (tokens.length === 0) return undefined;
  // A repeated word adds nothing; at most 32 words keeps a hostile query cheap.
  const unique = [...new Set(tokens.map((t) => t.toLowerCase()))].slice(0, 32);
  return unique.map((t) => `"${t.replaceAll('"', '""')}"*`).join(" ");
}
