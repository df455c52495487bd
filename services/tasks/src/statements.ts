import type { Db } from "@taskmesh/platform";
import type Database from "better-sqlite3";

const cache = new WeakMap<Db, Map<string, Database.Statement>>();

/**
 * `db.prepare(sql)`, compiled once per database and SQL text: preparing costs more than running
 * a point read, so a statement written inline in a method is reused from here on later calls.
 * A statement's mode (pluck, raw) sticks to it, so one SQL text is used one way.
 */
// biome-ignore lint/suspicious/noExplicitAny: the same default as better-sqlite3's Statement
export function prepared<P extends unknown[] | object = unknown[], R = any>(
  db: Db,
  sql: string,
): Database.Statement<P, R> {
  let stmts = cache.get(db);
  if (!stmts) {
    stmts = new Map();
    cache.set(db, stmts);
  }
  let stmt = stmts.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql);
    stmts.set(sql, stmt);
  }
  return stmt as unknown as Database.Statement<P, R>;
}
