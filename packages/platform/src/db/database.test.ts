import { chmodSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../testing/index.js";
import { openDatabase } from "./database.js";

const v1 = { version: 1, name: "notes", sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)" };
const v2 = { version: 2, name: "notes.tag", sql: "ALTER TABLE notes ADD COLUMN tag TEXT" };

describe("openDatabase", () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it("uses WAL with synchronous=FULL and applies migrations once, in order", () => {
    const path = join(dir.path, "a.db");
    const db = openDatabase(path, [v2, v1]);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2); // FULL
    db.prepare("INSERT INTO notes (body, tag) VALUES ('x', 't')").run();
    db.close();
    const again = openDatabase(path, [v1, v2]);
    const versions = again.prepare("SELECT version FROM schema_migrations ORDER BY version").pluck().all();
    expect(versions).toEqual([1, 2]);
    expect(again.prepare("SELECT count(*) FROM notes").pluck().get()).toBe(1);
    again.close();
  });

  it("keeps the database owner-only: new directories 0700, the file and its -wal/-shm 0600, an old 0644 file tightened", () => {
    const path = join(dir.path, "private", "nested", "p.db");
    const db = openDatabase(path, [v1]);
    db.prepare("INSERT INTO notes (body) VALUES ('secret')").run();
    const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);
    expect([mode(join(dir.path, "private")), mode(join(dir.path, "private", "nested"))]).toEqual(["700", "700"]);
    expect([mode(path), mode(`${path}-wal`), mode(`${path}-shm`)]).toEqual(["600", "600", "600"]);
    db.close();

    const old = join(dir.path, "old.db");
    writeFileSync(old, "");
    chmodSync(old, 0o644);
    openDatabase(old, [v1]).close();
    expect(mode(old)).toBe("600");
  });

  it("refuses a database written by a newer build", () => {
    const path = join(dir.path, "b.db");
    openDatabase(path, [v1, v2]).close();
    expect(() => openDatabase(path, [v1])).toThrow(/newer than this build/);
  });

  it("rolls back a failing migration entirely", () => {
    const path = join(dir.path, "c.db");
    const bad = {
      version: 2,
      name: "bad",
      sql: "ALTER TABLE notes ADD COLUMN a TEXT; ALTER TABLE nope ADD COLUMN b TEXT",
    };
    expect(() => openDatabase(path, [v1, bad])).toThrow();
    const db = openDatabase(path, [v1]);
    const cols = db.prepare("SELECT name FROM pragma_table_info('notes')").pluck().all();
    expect(cols).toEqual(["id", "body"]);
    db.close();
  });
});
