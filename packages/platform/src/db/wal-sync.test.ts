import { fdatasync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../testing/index.js";
import { openDatabase } from "./database.js";
import { WalSync } from "./wal-sync.js";

const notes = { version: 1, name: "notes", sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)" };

/** The real fdatasync, each call held until the test releases it (or fails it). */
function gatedSync() {
  const held: { release: () => void; fail: (err: Error) => void }[] = [];
  return {
    held,
    fdatasync: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      held.push({ release: () => fdatasync(fd, cb), fail: (err) => cb(err) });
    },
  };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setTimeout(r, 20));
  return done;
};

describe("WalSync", () => {
  const dir = tempDir();
  let n = 0;
  const open = () => openDatabase(join(dir.path, `w${++n}.db`), [notes]);
  afterAll(() => dir.remove());

  it("commits with synchronous=NORMAL and leaves the connection FULL for every other commit", () => {
    const db = open();
    const sync = new WalSync(db);
    const inside = sync.commit(() => {
      db.prepare("INSERT INTO notes (body) VALUES ('a')").run();
      return db.pragma("synchronous", { simple: true });
    });
    expect(inside).toBe(1); // NORMAL
    expect(db.pragma("synchronous", { simple: true })).toBe(2); // FULL
    expect(() =>
      sync.commit(() => {
        throw new Error("rolled back");
      }),
    ).toThrow(/rolled back/);
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    db.close();
  });

  it("serves every commit made while one fdatasync ran with one more (group commit), each caller answered after its own", async () => {
    const db = open();
    const gate = gatedSync();
    const sync = new WalSync(db, { fdatasync: gate.fdatasync });
    const insert = db.prepare("INSERT INTO notes (body) VALUES (?)");
    sync.commit(() => insert.run("first"));
    const first = sync.sync();
    expect(gate.held).toHaveLength(1);
    const later = ["b", "c", "d"].map((body) => {
      sync.commit(() => insert.run(body));
      return sync.sync();
    });
    expect(gate.held).toHaveLength(1); // the later ones wait for the running sync to end
    gate.held[0]?.release();
    await first;
    expect(await settled(Promise.all(later))).toBe(false); // their frames may postdate that sync
    expect(gate.held).toHaveLength(2); // one more for all three
    gate.held[1]?.release();
    await Promise.all(later);
    expect(sync.syncs).toBe(2);
    sync.close();
    db.close();
  });

  it("joins a running fdatasync that started after its commit, and runs none when nothing new was written", async () => {
    const db = open();
    const gate = gatedSync();
    const sync = new WalSync(db, { fdatasync: gate.fdatasync });
    sync.commit(() => db.prepare("INSERT INTO notes (body) VALUES ('x')").run());
    const a = sync.sync();
    const b = sync.sync(); // nothing committed in between: the running one covers it
    expect(gate.held).toHaveLength(1);
    gate.held[0]?.release();
    await Promise.all([a, b]);
    await sync.sync();
    expect(sync.syncs).toBe(1);
    sync.close();
    db.close();
  });

  it("syncs once at start even with nothing committed (a previous process may have left unsynced commits)", async () => {
    const db = open();
    const sync = new WalSync(db);
    await sync.sync();
    expect(sync.syncs).toBe(1);
    await sync.sync();
    expect(sync.syncs).toBe(1);
    sync.close();
    db.close();
  });

  it("rejects when the fdatasync fails, and the next sync tries again", async () => {
    const db = open();
    const gate = gatedSync();
    const sync = new WalSync(db, { fdatasync: gate.fdatasync });
    sync.commit(() => db.prepare("INSERT INTO notes (body) VALUES ('x')").run());
    const failed = sync.sync();
    gate.held[0]?.fail(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    await expect(failed).rejects.toThrow(/EIO/);
    const again = sync.sync();
    expect(gate.held).toHaveLength(2);
    gate.held[1]?.release();
    await again;
    sync.close();
    db.close();
  });

  it("is plain for an in-memory database: commit runs the work, sync resolves", async () => {
    const db = openDatabase(":memory:", [notes]);
    const sync = new WalSync(db);
    sync.commit(() => db.prepare("INSERT INTO notes (body) VALUES ('m')").run());
    await sync.sync();
    expect(sync.syncs).toBe(0);
    expect(db.prepare("SELECT count(*) FROM notes").pluck().get()).toBe(1);
    db.close();
  });
});
