import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

export type Db = Database.Database;

/** A forward-only migration: applied once, in order, never edited after it has shipped. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Opens (creating if needed) a service's SQLite database and applies pending migrations.
 *
 * - WAL: readers do not block the writer, and a commit is one append to the log.
 * - synchronous=FULL: in WAL mode, NORMAL only fsyncs at checkpoints, so a commit survives a
 *   killed *process* (the data is in the OS page cache) but may be lost on power loss or a
 *   kernel crash. We acknowledge a write to a caller only after its transaction commits, and
 *   "an acknowledged write survives" should hold for a node failure in the mesh too, so every
 *   commit is fsynced (FULL). The cost is one fsync per write transaction, measured in the
 *   benchmarks; reads are unaffected. A hot write path can instead commit through a WalSync
 *   (wal-sync.ts) and answer after its fsync, shared by the commits made meanwhile.
 * - foreign_keys on; busy_timeout so a second connection (a CLI, a test) waits instead of failing.
 * - Owner-only files: the directories it creates are 0700, the database file 0600 (created so,
 *   or tightened if an older run left it 0644), and SQLite gives its -wal and -shm files the
 *   database file's mode. Password hashes, tokens' subjects and task text are in there.
 */
export function openDatabase(path: string, migrations: readonly Migration[]): Db {
  if (path !== ":memory:") ownerOnly(path);
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db, migrations);
  return db;
}

function ownerOnly(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, "a", 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}

export function migrate(db: Db, migrations: readonly Migration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const applied = new Set(
    (db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version),
  );
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  for (const m of sorted) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
    })();
  }
  const newest = sorted.at(-1)?.version ?? 0;
  const known = Math.max(0, ...applied);
  if (known > newest) throw new Error(`database schema version ${known} is newer than this build (${newest})`);
}

/** Readiness probe for a database: a trivial read that fails if the file is gone or locked. */
export function pingDatabase(db: Db): boolean {
  try {
    db.prepare("SELECT 1").get();
    return true;
  } catch {
    return false;
  }
}
