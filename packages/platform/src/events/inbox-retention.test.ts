// Inbox retention with the real parts: a real nats-server (JetStream), SQLite, and the
// EventConsumer that writes the inbox. Shows what keeps exactly-once when old rows go.
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../db/database.js";
import { createLogger } from "../log/logger.js";
import { type NatsServer, startNats, tempDir, waitFor } from "../testing/index.js";
import { EventConsumer } from "./consumer.js";
import { InboxPruner, inboxMigration } from "./inbox.js";
import { NatsLink } from "./nats-link.js";
import { ensureStreams } from "./streams.js";

const logger = createLogger("inbox-retention-test", { level: "silent" });
const DAY = 24 * 60 * 60 * 1000;

describe("inbox retention", () => {
  const dir = tempDir("inbox-retention-");
  let nats: NatsServer;
  let link: NatsLink;
  beforeAll(async () => {
    nats = await startNats();
    link = new NatsLink({ servers: nats.url, name: "inbox-retention", logger, reconnectTimeWaitMs: 100 });
  });
  afterAll(async () => {
    await link?.close();
    await nats?.stop();
    dir.remove();
  });

  let n = 0;
  function fixture() {
    n++;
    const db = openDatabase(join(dir.path, `r${n}.db`), [
      inboxMigration(1),
      { version: 2, name: "effects", sql: "CREATE TABLE effects (event_id TEXT NOT NULL)" },
    ]);
    const stream = { name: `RETAIN${n}`, subjects: [`taskmesh.retain${n}.>`] };
    const durable = `retain${n}-consumer`;
    let lostAcks = 1;
    const consumer = new EventConsumer({
      link,
      db,
      logger,
      stream,
      consumer: { durable, ackWaitMs: 1000, maxDeliver: 3 },
      retryBackoff: { initialMs: 50, maxMs: 100 },
      handler: (event) => {
        db.prepare("INSERT INTO effects (event_id) VALUES (?)").run(event.id);
      },
      // The first ack is lost, as if the process died between the commit and the ack.
      hooks: {
        afterCommit: () => {
          if (lostAcks-- > 0) throw new Error("ack lost");
        },
      },
    });
    const publish = async (id: string, msgID = id) => {
      const event = create(EnvelopeSchema, {
        id,
        type: "retain.created",
        occurredAt: timestampFromDate(new Date()),
        aggregateId: "a",
      });
      await ensureStreams(await link.jetstreamManager(), [stream]);
      const js = await link.jetstream();
      return js.publish(`taskmesh.retain${n}.created`, toBinary(EnvelopeSchema, event), { msgID });
    };
    const rows = () => db.prepare("SELECT event_id FROM inbox ORDER BY processed_at").pluck().all() as string[];
    const effects = () => db.prepare("SELECT event_id FROM effects").pluck().all() as string[];
    const insertOld = db.prepare("INSERT INTO inbox (consumer, event_id, subject, processed_at) VALUES (?, ?, ?, ?)");
    const old = (count: number, ageMs: number) => {
      const at = new Date(Date.now() - ageMs).toISOString();
      db.transaction(() => {
        for (let i = 0; i < count; i++) insertOld.run(durable, randomUUID(), "taskmesh.old", at);
      })();
    };
    return { db, durable, consumer, publish, rows, effects, old };
  }

  it("keeps exactly-once: a lost ack is redelivered long before the row's horizon, and a republish is dropped by JetStream", async () => {
    const f = fixture();
    f.consumer.start();
    const id = randomUUID();
    await f.publish(id);
    // The ack was lost: JetStream redelivers after the ack wait; the inbox row turns it into a duplicate.
    await waitFor("the redelivery to be acked as a duplicate", () => f.consumer.stats.duplicates === 1);
    expect(f.effects()).toEqual([id]);
    // A pass now deletes nothing of it: the row is minutes old, the horizon is days.
    expect(await f.consumer.pruner.prune()).toBe(0);
    expect(f.rows()).toEqual([id]);
    // A relay republishing the same outbox row (same Nats-Msg-Id) within the duplicate window
    // never reaches the consumer, with or without the row.
    expect((await f.publish(id)).duplicate).toBe(true);
    await f.consumer.stop();
    expect(f.effects()).toEqual([id]);
  });

  it("deletes rows past the horizon in batches, yielding to the event loop between them", async () => {
    const f = fixture();
    f.old(1250, 8 * DAY);
    f.old(3, 1 * DAY);
    const pruner = new InboxPruner(f.db, f.durable, 60_000, { batchSize: 500 });
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const deleted = await pruner.prune();
    clearInterval(ticker);
    expect(deleted).toBe(1250);
    expect(f.rows()).toHaveLength(3); // a day old: kept (default horizon 7 days)
    expect(turns).toBeGreaterThan(0); // timers ran between the batches
  });

  it("refuses a horizon shorter than twice the redelivery horizon, and runs no pass before this process has consumed for one", async () => {
    const f = fixture();
    expect(() => new InboxPruner(f.db, f.durable, 10 * 60_000, { horizonMs: 15 * 60_000 })).toThrow(
      /must be at least twice its redelivery horizon/,
    );
    f.old(5, 8 * DAY);
    let clock = Date.now();
    const pruner = new InboxPruner(f.db, f.durable, 10 * 60_000, { intervalMs: 20 }, () => clock);
    pruner.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(f.rows()).toHaveLength(5); // started < 10 min ago (by its clock): rows still due for redelivery are safe
    clock += 10 * 60_000;
    await waitFor("the first pass", () => f.rows().length === 0);
    await pruner.stop();
  });
});
