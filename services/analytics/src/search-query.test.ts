import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { ftsQuery } from "./search-query.js";

describe("ftsQuery", () => {
  it("quotes each word as a prefix, all required", () => {
    expect(ftsQuery("Buy gro")).toBe('"buy"* "gro"*');
  });

  it("turns FTS5 syntax into plain words or drops it", () => {
    expect(ftsQuery('"foo AND (')).toBe('"foo"* "and"*');
    expect(ftsQuery("title:x* NEAR(a b) ^c")).toBe('"title"* "x"* "near"* "a"* "b"* "c"*');
    expect(ftsQuery('"( ) * : ^ -')).toBeUndefined();
  });

  it("splits words like the unicode61 tokenizer and keeps letters of any script", () => {
    expect(ftsQuery("don't e-mail Café 東京")).toBe('"don"* "t"* "e"* "mail"* "café"* "東京"*');
  });

  it("never makes SQLite raise a syntax error, whatever the input", () => {
    const db = new Database(":memory:");
    db.exec("CREATE VIRTUAL TABLE t USING fts5(title, notes, tokenize = 'unicode61 remove_diacritics 2')");
    db.prepare("INSERT INTO t VALUES (?, ?)").run("Buy groceries", "milk and eggs");
    const search = db.prepare("SELECT title FROM t WHERE t MATCH ?").pluck();
    const nasty = [
      '"foo AND (',
      "AND",
      "OR NOT",
      "a:b",
      "x*y",
      "NEAR(",
      "\u0000",
      '""""',
      "milk -eggs",
      "{title}: buy",
    ];
    for (const q of nasty) {
      const m = ftsQuery(q);
      if (m) expect(() => search.all(m), q).not.toThrow();
    }
    expect(search.all(ftsQuery("MILK gro") ?? "")).toEqual(["Buy groceries"]);
    db.close();
  });
});
