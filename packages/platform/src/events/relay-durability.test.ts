import { randomUUID } from "node:crypto";
import { closeSync, copyFileSync, fdatasync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Db, openDatabase } from "../db/database.js";
import { WalSync } from "../db/wal-sync.js";
import { createLogger } from "../log/logger.js";
import { type NatsServer, startNats, tempDir, waitFor } from "../testing/index.js";
import { EventConsumer } from "./consumer.js";
import { inboxMigration } from "./inbox.js";
import { NatsLink } from "./nats-link.js";
import { appendEvent, outboxMigration } from "./outbox.js";
import { OutboxRelay } from "./relay.js";
import type { StreamSpec } from "./streams.js";

const logger = createLogger("relay-durability-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const ITEMS = { version: 3, name: "items", sql: "CREATE TABLE items (id TEXT PRIMARY KEY)" };
const EFFECTS = {
  version: 2,
  name: "effects",
  sql: "CREATE TABLE effects (n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL)",
};

// What a power cut leaves of a WAL database: the main file, and the WAL up to its last fsync.
// Frames written after it (commits with synchronous=NORMAL) were only in the page cache.
function powerCutCopy(path: string, syncedWalBytes: number, to: string): void {
  copyFileSync(path, to);
  const wal = Buffer.alloc(syncedWalBytes);
  const fd = openSync(`${path}-wal`, "r");
  readSync(fd, wal, 0, syncedWalBytes, 0);
  closeSync(fd);
  writeFileSync(`${to}-wal`, wal);
}

describe("OutboxRelay durability (real nats-server, real SQLite files)", () => {
  const dir = tempDir("taskmesh-relay-durability-");
  let nats: NatsServer;
  const cleanups: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await nats?.stop();
    dir.remove();
  });

  let n = 0;
  function fixture() {
    n++;
    const stream: StreamSpec = { name: `D${n}`, subjects: [`taskmesh.d${n}.>`] };
    const link = () => {
      const l = new NatsLink({ servers: nats.url, name: `d${n}-${randomUUID()}`, logger, reconnectTimeWaitMs: 100 });
      cleanups.push(() => l.close());
      return l;
    };
    const producerPath = join(dir.path, `producer-${n}.db`);
    const migrations = [outboxMigration(1), ITEMS];
    const producer = openDatabase(producerPath, migrations);
    const createItem = (db: Db) => {
      const event = create(EnvelopeSchema, {
        id: randomUUID(),
        type: `d${n}.created`,
        occurredAt: timestampFromDate(new Date()),
        aggregateId: randomUUID(),
      });
      db.transaction(() => {
        db.prepare("INSERT INTO items (id) VALUES (?)").run(event.aggregateId);
        appendEvent(db, event);
      })();
      return event;
    };
    const relay = (db: Db, walSync?: WalSync) => {
      const r = new OutboxRelay({ db, link: link(), logger, streams: [stream], ...(walSync ? { walSync } : {}) });
      cleanups.push(() => r.stop());
      return r;
    };
    // The consuming service: a database of its own, which the producer's power cut does not touch.
    const consumerDb = openDatabase(join(dir.path, `consumer-${n}.db`), [inboxMigration(1), EFFECTS]);
    const consumer = new EventConsumer({
      link: link(),
      db: consumerDb,
      logger,
      stream,
      consumer: { durable: `d${n}-consumer`, ackWaitMs: 1000, maxDeliver: 3 },
      handler: (event) => {
        consumerDb.prepare("INSERT INTO effects (event_id) VALUES (?)").run(event.id);
      },
    });
    cleanups.push(() => consumer.stop());
    const effects = () => consumerDb.prepare("SELECT event_id FROM effects ORDER BY n").pluck().all();
    return { stream, producer, producerPath, migrations, createItem, relay, consumer, effects };
  }

  it("a mark lost to a power cut (its commit was not fsynced) republishes the event; de-dup and the consumer leave one effect", async () => {
    const f = fixture();
    f.consumer.start();
    const first = f.relay(f.producer);
    first.start();
    const sent = f.createItem(f.producer); // a FULL commit: on disk when it returns
    const synced = statSync(`${f.producerPath}-wal`).size;
    await waitFor("published and marked", () => first.backlog() === 0 && first.stats.published === 1);
    await waitFor("the effect", () => f.effects().length === 1);
    expect(statSync(`${f.producerPath}-wal`).size).toBeGreaterThan(synced); // the mark's frames came after

    const afterCut = join(dir.path, `after-cut-${randomUUID()}.db`);
    powerCutCopy(f.producerPath, synced, afterCut);
    await first.stop();
    const restarted = openDatabase(afterCut, f.migrations);
    cleanups.push(() => {
      restarted.close();
    });
    const next = f.relay(restarted);
    expect(next.backlog()).toBe(1); // the row is back to unpublished
    next.start();
    await waitFor("republished", () => next.backlog() === 0);
    expect(next.stats.duplicates).toBe(1); // JetStream's duplicate window dropped the copy
    await new Promise((r) => setTimeout(r, 300));
    expect(f.effects()).toEqual([sent.id]);
    expect(f.consumer.stats).toMatchObject({ applied: 1 });
  });

  it("with a WalSync, publishes a row committed without an fsync only once its sync has run", async () => {
    const f = fixture();
    f.consumer.start();
    const held: (() => void)[] = [];
    const walSync = new WalSync(f.producer, { fdatasync: (fd, cb) => held.push(() => fdatasync(fd, cb)) });
    cleanups.push(() => walSync.close());
    const relay = f.relay(f.producer, walSync);
    relay.start();
    await waitFor("the relay's start-up sync", () => held.length === 1);
    held.shift()?.();
    const sent = walSync.commit(() => f.createItem(f.producer));
    await waitFor("the relay waiting on a sync", () => held.length === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(relay.stats.published).toBe(0); // not on disk yet: not published
    expect(f.effects()).toEqual([]);
    held.shift()?.();
    await waitFor("published", () => relay.backlog() === 0 && relay.stats.published === 1);
    await waitFor("the effect", () => f.effects().length === 1);
    expect(f.effects()).toEqual([sent.id]);
  });
});
