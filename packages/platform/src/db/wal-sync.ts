import { closeSync, fdatasync, openSync } from "node:fs";
import type { Db } from "./database.js";

export interface WalSyncOptions {
  /** fs.fdatasync, replaceable by a test that must hold a sync open. @default node:fs fdatasync */
  fdatasync?: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => void;
}

/**
 * Group commit for a WAL database opened with synchronous=FULL: `commit(fn)` runs a write
 * transaction with synchronous=NORMAL (its WAL frames written, not yet fsynced; the connection is
 * FULL again right after), and `sync()` resolves once the WAL file is fdatasync'ed on the libuv
 * pool, so everything `commit` wrote before the call is on disk. The caller answers only after
 * `sync()`: one fsync then serves every commit made while the previous one ran, and the event
 * loop does not wait for the disk. A killed process loses nothing either way (the frames are in
 * the page cache); a power cut can take back only commits not yet answered. Readers may see such
 * a commit before its sync; a FULL commit after it syncs it too (the WAL is appended in order).
 * For an in-memory or non-WAL database both are plain: `commit` runs `fn`, `sync` resolves.
 */
export class WalSync {
  readonly #db: Db;
  readonly #fdatasync: NonNullable<WalSyncOptions["fdatasync"]>;
  readonly #wal: boolean;
  #fd: number | undefined;
  /** Commits made through `commit`; 1 at start, so the first sync also covers what a previous process left unsynced. */
  #written = 1;
  /** The highest `#written` a finished fdatasync covers. */
  #synced = 0;
  #running: { covers: number; done: Promise<void> } | undefined;
  #queued: Promise<void> | undefined;
  #syncs = 0;

  constructor(db: Db, opts: WalSyncOptions = {}) {
    this.#db = db;
    this.#fdatasync = opts.fdatasync ?? fdatasync;
    this.#wal = !db.memory && String(db.pragma("journal_mode", { simple: true })).toLowerCase() === "wal";
  }

  /** fdatasyncs run so far (a sync() that found everything synced runs none). */
  get syncs(): number {
    return this.#syncs;
  }

  /** Runs `fn` (a synchronous write transaction) with synchronous=NORMAL; `sync()` makes it durable. */
  commit<T>(fn: () => T): T {
    if (!this.#wal) return fn();
    // db.pragma each time: SQLite applies PRAGMA synchronous when it is prepared, so a prepared
    // statement run again would not set it again.
    const level = Number(this.#db.pragma("synchronous", { simple: true }));
    this.#db.pragma("synchronous = NORMAL");
    try {
      return fn();
    } finally {
      this.#written++;
      this.#db.pragma(`synchronous = ${level}`);
    }
  }

  /** Resolves once everything `commit` wrote before this call is on disk; rejects if the fdatasync fails. */
  sync(): Promise<void> {
    if (!this.#wal) return Promise.resolve();
    const need = this.#written;
    if (this.#synced >= need) return Promise.resolve();
    const running = this.#running;
    if (!running) return this.#start();
    if (running.covers >= need) return running.done;
    // The running fdatasync may have started before our frames were written: one more after it
    // covers every caller that arrives meanwhile.
    this.#queued ??= running.done
      .catch(() => {})
      .then(() => {
        this.#queued = undefined;
        return this.#start();
      });
    return this.#queued;
  }

  /** Closes the WAL file descriptor (after the last sync). */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #start(): Promise<void> {
    const covers = this.#written;
    this.#fd ??= openSync(`${this.#db.name}-wal`, "r");
    const fd = this.#fd;
    this.#syncs++;
    const done = new Promise<void>((resolve, reject) =>
      this.#fdatasync(fd, (err) => {
        this.#running = undefined;
        if (err) return reject(err);
        this.#synced = Math.max(this.#synced, covers);
        resolve();
      }),
    );
    this.#running = { covers, done };
    return done;
  }
}
