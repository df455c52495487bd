import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Envelope, EnvelopeSchema, TaskDeletedSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import Database from "better-sqlite3";
import type { JetStreamManager } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Db, openDatabase } from "../db/database.js";
import { createLogger } from "../log/logger.js";
import { freePort, type NatsServer, startNats, tempDir, waitFor } from "../testing/index.js";
import { backoffDelay } from "./backoff.js";
import { DEADLETTER_HEADERS, EventConsumer, type EventConsumerOptions, TransientError } from "./consumer.js";
import { inboxMigration } from "./inbox.js";
import { NatsLink, natsReady } from "./nats-link.js";
import { appendEvent, eventType, newEvent, outboxMigration } from "./outbox.js";
import { OutboxRelay, type OutboxRelayOptions } from "./relay.js";
import { ensureConsumer, ensureStreams, STREAMS, type StreamSpec } from "./streams.js";

const logger = createLogger("events-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });

// The "service" of these tests: a table of items; each item's creation emits "<prefix>.created",
// and the consuming side records one effect row per event it applies.
const ITEMS: { version: number; name: string; sql: string } = {
  version: 3,
  name: "test tables",
  sql: `CREATE TABLE items (id TEXT PRIMARY KEY);
        CREATE TABLE effects (n INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, aggregate_id TEXT NOT NULL);`,
};

describe("events kit (real nats-server)", () => {
  const dir = tempDir("taskmesh-events-");
  let nats: NatsServer;
  let jsm: JetStreamManager;
  let admin: NatsLink;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "admin", logger, reconnectTimeWaitMs: 100 });
    jsm = await admin.jetstreamManager();
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    await admin?.close();
    await nats?.stop();
    dir.remove();
  });

  let n = 0;
  /** A fresh database, stream (own subjects) and links for one test. */
  function fixture(streamOverrides: Partial<StreamSpec> = {}) {
    n++;
    const prefix = `t${n}`;
    const stream: StreamSpec = { name: `T${n}`, subjects: [`taskmesh.${prefix}.>`], ...streamOverrides };
    const db: Db = openDatabase(join(dir.path, `${prefix}.db`), [outboxMigration(1), inboxMigration(2), ITEMS]);
    const link = new NatsLink({ servers: nats.url, name: prefix, logger, reconnectTimeWaitMs: 100 });
    cleanups.push(async () => {
      await link.close();
      db.close();
    });
    const insertItem = db.prepare("INSERT INTO items (id) VALUES (?)");
    /** Creates an item and its event in one transaction, as a service would. */
    const createItem = (id: string = randomUUID(), opts: { traceparent?: string; fail?: boolean } = {}): Envelope => {
      const event = create(EnvelopeSchema, {
        id: randomUUID(),
        type: `${prefix}.created`,
        occurredAt: timestampFromDate(new Date()),
        userId: "u1",
        aggregateId: id,
      });
      db.transaction(() => {
        insertItem.run(id);
        appendEvent(db, event, { traceparent: opts.traceparent });
        if (opts.fail) throw new Error("rolled back on purpose");
      })();
      return event;
    };
    const relay = (o: Partial<OutboxRelayOptions> = {}) => {
      const r = new OutboxRelay({ db, link, logger, streams: [stream], pollIntervalMs: 200, ...o });
      cleanups.push(() => r.stop());
      return r;
    };
    const insertEffect = db.prepare("INSERT INTO effects (event_id, aggregate_id) VALUES (?, ?)");
    const consumer = (o: Partial<EventConsumerOptions> = {}) => {
      const c = new EventConsumer({
        link,
        db,
        logger,
        stream,
        consumer: { durable: `${prefix}-consumer`, ackWaitMs: 1000, maxDeliver: 3 },
        handler: (event) => {
          insertEffect.run(event.id, event.aggregateId);
        },
        retryBackoff: { initialMs: 100, maxMs: 400 },
        ...o,
      });
      cleanups.push(() => c.stop());
      return c;
    };
    const effects = () =>
      db.prepare("SELECT event_id AS eventId FROM effects ORDER BY n").all() as { eventId: string }[];
    const effectIds = () => effects().map((e) => e.eventId);
    const streamMessages = async () => {
      // A JetStream request sent while the admin connection is still reconnecting can be lost
      // (it then times out after 5 s), so wait for it after the restart test.
      await waitFor("the admin connection", () => admin.connected);
      const info = await jsm.streams.info(stream.name);
      const out = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        out.push(await jsm.streams.getMessage(stream.name, { seq }));
      }
      return out;
    };
    const publishRaw = async (data: Uint8Array, msgID: string) => {
      await ensureStreams(jsm, [stream]);
      const js = await admin.jetstream();
      return js.publish(`taskmesh.${prefix}.created`, data, { msgID });
    };
    return { prefix, stream, db, link, createItem, relay, consumer, effectIds, streamMessages, publishRaw };
  }

  async function deadLetter(durable: string) {
    return jsm.streams.getMessage(STREAMS.DEADLETTER.name, { last_by_subj: `taskmesh.deadletter.${durable}` });
  }

  describe("outbox", () => {
    it("refuses an event outside a transaction (it must commit with the state change)", () => {
      const f = fixture();
      const event = create(EnvelopeSchema, { id: randomUUID(), type: "t.created" });
      expect(() => appendEvent(f.db, event)).toThrow(/inside the db.transaction/);
    });

    it("derives the event type from the payload case", () => {
      expect(eventType("taskCreated")).toBe("task.created");
      expect(eventType("reminderDue")).toBe("reminder.due");
      expect(eventType("notificationSent")).toBe("notification.sent");
      const e = newEvent({
        userId: "u1",
        aggregateId: "t1",
        payload: { case: "taskDeleted", value: create(TaskDeletedSchema, { taskId: "t1", version: 2n }) },
      });
      expect(e.type).toBe("task.deleted");
      expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    });

    it("backs off exponentially with jitter, capped", () => {
      const opts = { initialMs: 100, maxMs: 1000 };
      expect(backoffDelay(1, opts, () => 1)).toBe(100);
      expect(backoffDelay(3, opts, () => 1)).toBe(400);
      expect(backoffDelay(3, opts, () => 0)).toBe(200);
      expect(backoffDelay(20, opts, () => 1)).toBe(1000);
    });
  });

  describe("streams and consumers declared in code", () => {
    it("creates a stream with file storage and the duplicate window, and updates it when the declaration changes", async () => {
      const spec: StreamSpec = { name: "DECL", subjects: ["taskmesh.decl.a"], duplicateWindowMs: 60_000 };
      await ensureStreams(jsm, [spec]);
      await ensureStreams(jsm, [spec]); // idempotent: a second instance starting does the same
      let info = await jsm.streams.info("DECL");
      expect(info.config).toMatchObject({ storage: "file", subjects: ["taskmesh.decl.a"], duplicate_window: 60e9 });
      await ensureStreams(jsm, [{ ...spec, subjects: ["taskmesh.decl.a", "taskmesh.decl.b"] }]);
      info = await jsm.streams.info("DECL");
      expect(info.config.subjects).toEqual(["taskmesh.decl.a", "taskmesh.decl.b"]);
    });

    it("creates a durable explicit-ack consumer and updates its ack wait", async () => {
      await ensureStreams(jsm, [{ name: "DECL2", subjects: ["taskmesh.decl2.>"] }]);
      const spec = { stream: "DECL2", durable: "decl2", ackWaitMs: 5000, maxDeliver: 4 };
      await ensureConsumer(jsm, spec);
      await ensureConsumer(jsm, spec);
      let info = await jsm.consumers.info("DECL2", "decl2");
      expect(info.config).toMatchObject({
        durable_name: "decl2",
        ack_policy: "explicit",
        ack_wait: 5e9,
        max_deliver: 7,
      });
      await ensureConsumer(jsm, { ...spec, ackWaitMs: 9000 });
      info = await jsm.consumers.info("DECL2", "decl2");
      expect(info.config.ack_wait).toBe(9e9);
    });
  });

  describe("OutboxRelay", () => {
    it("publishes events committed in transactions in order, exactly once, with Nats-Msg-Id and traceparent", async () => {
      const f = fixture();
      const relay = f.relay();
      relay.start();
      const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
      const sent = [f.createItem(undefined, { traceparent })];
      for (let i = 0; i < 24; i++) sent.push(f.createItem());
      await waitFor("backlog to drain", () => relay.backlog() === 0);

      const stored = await f.streamMessages();
      expect(stored.map((m) => fromBinary(EnvelopeSchema, m.data).id)).toEqual(sent.map((e) => e.id));
      expect(stored.map((m) => m.header.get("Nats-Msg-Id"))).toEqual(sent.map((e) => e.id));
      expect(stored[0]?.subject).toBe(`taskmesh.${f.prefix}.created`);
      expect(stored[0]?.header.get("traceparent")).toBe(traceparent);
      expect(relay.stats).toMatchObject({ published: 25, duplicates: 0 });
    });

    it("publishes nothing for a rolled-back transaction", async () => {
      const f = fixture();
      const relay = f.relay();
      relay.start();
      expect(() => f.createItem("rolled-back", { fail: true })).toThrow(/on purpose/);
      const marker = f.createItem("committed");
      await waitFor("the committed event", () => relay.backlog() === 0 && relay.stats.published === 1);
      const stored = await f.streamMessages();
      expect(stored.map((m) => fromBinary(EnvelopeSchema, m.data).id)).toEqual([marker.id]);
    });

    it("marks published rows without changing the connection's durability for the service's own commits (synchronous stays FULL)", async () => {
      const f = fixture();
      expect(f.db.pragma("synchronous", { simple: true })).toBe(2);
      const relay = f.relay();
      relay.start();
      for (let i = 0; i < 5; i++) f.createItem();
      await waitFor("backlog 0", () => relay.backlog() === 0 && relay.stats.published === 5);
      expect(f.db.pragma("synchronous", { simple: true })).toBe(2);
      expect(await f.streamMessages()).toHaveLength(5);
    });

    it("reports the unpublished backlog and publishes what a previous process left at start", async () => {
      const f = fixture();
      for (let i = 0; i < 3; i++) f.createItem();
      const relay = f.relay();
      expect(relay.backlog()).toBe(3);
      relay.start(); // no commit happens after start: only the start-up pass can publish them
      await waitFor("backlog 0", () => relay.backlog() === 0);
      expect(await f.streamMessages()).toHaveLength(3);
    });
  });

  describe("EventConsumer", () => {
    it("applies each event once, in order, and records it in the inbox", async () => {
      const f = fixture();
      f.relay().start();
      const consumer = f.consumer();
      consumer.start();
      const sent = [f.createItem(), f.createItem(), f.createItem()];
      await waitFor("3 effects", () => f.effectIds().length === 3);
      expect(f.effectIds()).toEqual(sent.map((e) => e.id));
      const inbox = f.db.prepare("SELECT event_id FROM inbox WHERE consumer = ?").pluck().all(`${f.prefix}-consumer`);
      expect(inbox.sort()).toEqual(sent.map((e) => e.id).sort());
      const info = await waitFor("every delivery acked", async () => {
        const i = await jsm.consumers.info(f.stream.name, `${f.prefix}-consumer`);
        return i.num_ack_pending === 0 && i.num_pending === 0 ? i : undefined;
      });
      expect(info.config).toMatchObject({ ack_policy: "explicit", max_deliver: 3 + 3 });
    });

    it("acks a redelivered event without a second effect (ack lost after the commit)", async () => {
      const f = fixture();
      f.relay().start();
      let crashes = 0;
      const consumer = f.consumer({
        hooks: {
          afterCommit: () => {
            if (crashes++ === 0) throw new Error("simulated crash before the ack");
          },
        },
      });
      consumer.start();
      const sent = f.createItem();
      await waitFor("redelivery after ack_wait", () => consumer.stats.duplicates === 1);
      expect(f.effectIds()).toEqual([sent.id]);
      expect(consumer.stats.applied).toBe(1);
    });

    it("applies an event id once even when it arrives as two stream messages (past the de-dup window)", async () => {
      const f = fixture();
      const consumer = f.consumer();
      consumer.start();
      const event = create(EnvelopeSchema, { id: randomUUID(), type: `${f.prefix}.created`, aggregateId: "a" });
      const data = toBinary(EnvelopeSchema, event);
      await f.publishRaw(data, "copy-1");
      await f.publishRaw(data, "copy-2");
      await waitFor("both copies handled", () => consumer.stats.applied + consumer.stats.duplicates === 2);
      expect(f.effectIds()).toEqual([event.id]);
      expect(consumer.stats.duplicates).toBe(1);
    });

    it("naks a transient failure and applies the event on a later delivery", async () => {
      const f = fixture();
      f.relay().start();
      const deliveries: number[] = [];
      const consumer = f.consumer({
        consumer: { durable: `${f.prefix}-consumer`, ackWaitMs: 30_000, maxDeliver: 5 },
        handler: {
          external: async (_event, ctx) => {
            deliveries.push(ctx.deliveryCount);
            if (ctx.deliveryCount < 3) throw new TransientError("dependency unavailable");
          },
          apply: (event) => {
            f.db.prepare("INSERT INTO effects (event_id, aggregate_id) VALUES (?, ?)").run(event.id, event.aggregateId);
          },
        },
      });
      consumer.start();
      const sent = f.createItem();
      await waitFor("applied on the 3rd delivery", () => f.effectIds().length === 1);
      // ack_wait is 30 s, so these redeliveries can only come from nak(delay).
      expect(deliveries).toEqual([1, 2, 3]);
      expect(f.effectIds()).toEqual([sent.id]);
      expect(consumer.stats).toMatchObject({ retried: 2, applied: 1, deadLettered: 0 });
    });

    it("moves a poison event to the dead-letter stream with its reason, does not redeliver it, and goes on", async () => {
      const f = fixture();
      f.relay().start();
      let poisonCalls = 0;
      const consumer = f.consumer({
        handler: (event) => {
          if (event.aggregateId === "poison") {
            poisonCalls++;
            throw new Error("title is not a string");
          }
          f.db.prepare("INSERT INTO effects (event_id, aggregate_id) VALUES (?, ?)").run(event.id, event.aggregateId);
        },
      });
      consumer.start();
      const poison = f.createItem("poison");
      const next = f.createItem("next");
      await waitFor("the event after the poison one", () => f.effectIds().length === 1);
      expect(f.effectIds()).toEqual([next.id]);

      const dl = await deadLetter(`${f.prefix}-consumer`);
      expect(fromBinary(EnvelopeSchema, dl.data).id).toBe(poison.id);
      expect(dl.header.get(DEADLETTER_HEADERS.reason)).toBe("handler failed: title is not a string");
      expect(dl.header.get(DEADLETTER_HEADERS.eventId)).toBe(poison.id);
      expect(dl.header.get(DEADLETTER_HEADERS.subject)).toBe(`taskmesh.${f.prefix}.created`);
      expect(dl.header.get(DEADLETTER_HEADERS.deliveries)).toBe("1");
      // Terminated, not pending: it will not come back after ack_wait (1 s here).
      const info = await jsm.consumers.info(f.stream.name, `${f.prefix}-consumer`);
      expect(info.num_ack_pending).toBe(0);
      expect(info.num_pending).toBe(0);
      expect(info.num_redelivered).toBe(0);
      expect(poisonCalls).toBe(1);
      // No rollback of the inbox row is visible either: the poison event was never applied.
      expect(f.db.prepare("SELECT count(*) FROM inbox WHERE event_id = ?").pluck().get(poison.id)).toBe(0);
    });

    it("applies a burst in one commit, a poison and a transient event in it failing alone", async () => {
      const f = fixture();
      const relay = f.relay();
      relay.start();
      const ids = ["a", "b", "poison", "c", "flaky", "d"];
      const sent = ids.map((id) => f.createItem(id));
      await waitFor("the burst published", () => relay.stats.published === ids.length);
      // A second connection sees only committed rows: an event that finds its predecessors in its
      // own transaction but not there was applied in the same commit as they were.
      const reader = new Database(f.db.name, { readonly: true });
      cleanups.push(() => {
        reader.close();
      });
      const committed = reader.prepare("SELECT count(*) FROM effects").pluck();
      const inTx = f.db.prepare("SELECT count(*) FROM effects").pluck();
      let batched = 0;
      const consumer = f.consumer({
        handler: (event, ctx) => {
          if (event.aggregateId === "poison") throw new Error("title is not a string");
          if (event.aggregateId === "flaky" && ctx.deliveryCount === 1) throw new TransientError("busy");
          if ((committed.get() as number) < (inTx.get() as number)) batched++;
          f.db.prepare("INSERT INTO effects (event_id, aggregate_id) VALUES (?, ?)").run(event.id, event.aggregateId);
        },
      });
      consumer.start();
      await waitFor("every event but the poison one applied", () => f.effectIds().length === 5);
      const byId = new Map(ids.map((id, i) => [id, sent[i]?.id]));
      // In stream order, except the nak'ed one, which comes back after its backoff.
      expect(f.effectIds()).toEqual(["a", "b", "c", "d", "flaky"].map((id) => byId.get(id)));
      expect(batched).toBeGreaterThan(0);
      expect(consumer.stats).toMatchObject({ applied: 5, retried: 1, deadLettered: 1, duplicates: 0 });
      const dl = await deadLetter(`${f.prefix}-consumer`);
      expect(fromBinary(EnvelopeSchema, dl.data).id).toBe(byId.get("poison"));
      // The poison event's savepoint was rolled back: no inbox row, while the others have theirs.
      const inbox = f.db.prepare("SELECT event_id FROM inbox WHERE consumer = ?").pluck();
      expect((inbox.all(`${f.prefix}-consumer`) as string[]).sort()).toEqual(
        ["a", "b", "c", "d", "flaky"].map((id) => byId.get(id)).sort(),
      );
      await waitFor("every delivery settled", async () => {
        const i = await jsm.consumers.info(f.stream.name, `${f.prefix}-consumer`);
        return i.num_ack_pending === 0 && i.num_pending === 0;
      });
    });

    it("with syncBeforeAck, applies each event once and acks it; refuses a database with an outbox", async () => {
      const f = fixture();
      // The fixture's database has an outbox (it publishes): a lost commit's event would go out anyway.
      expect(() => f.consumer({ syncBeforeAck: true })).toThrow(/has an outbox/);
      const readModel = openDatabase(join(dir.path, `${f.prefix}-read.db`), [inboxMigration(1), ITEMS]);
      cleanups.push(() => {
        readModel.close();
      });
      const insert = readModel.prepare("INSERT INTO effects (event_id, aggregate_id) VALUES (?, ?)");
      let crashes = 0;
      const consumer = f.consumer({
        db: readModel,
        syncBeforeAck: true,
        handler: (event) => {
          insert.run(event.id, event.aggregateId);
        },
        hooks: {
          afterCommit: () => {
            if (crashes++ === 0) throw new Error("simulated crash before the ack");
          },
        },
      });
      f.relay().start();
      consumer.start();
      const sent = [f.createItem(), f.createItem(), f.createItem()];
      const applied = () => readModel.prepare("SELECT event_id FROM effects ORDER BY n").pluck().all();
      await waitFor("3 effects", () => applied().length === 3);
      // The first one's ack was lost: it comes back after ack_wait and finds its inbox row.
      await waitFor("redelivered as a duplicate", () => consumer.stats.duplicates === 1);
      expect(applied()).toEqual(sent.map((e) => e.id));
      await waitFor("every delivery acked", async () => {
        const i = await jsm.consumers.info(f.stream.name, `${f.prefix}-consumer`);
        return i.num_ack_pending === 0 && i.num_pending === 0;
      });
      expect(readModel.pragma("synchronous", { simple: true })).toBe(2); // back to FULL after each batch
    });

    it("dead-letters an undecodable message at once, without running the handler", async () => {
      const f = fixture();
      let calls = 0;
      const consumer = f.consumer({ handler: () => void calls++ });
      consumer.start();
      await f.publishRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), "junk");
      await waitFor("dead-lettered", () => consumer.stats.deadLettered === 1);
      const dl = await deadLetter(`${f.prefix}-consumer`);
      expect(dl.header.get(DEADLETTER_HEADERS.reason)).toMatch(/^undecodable event: /);
      expect(dl.header.get(DEADLETTER_HEADERS.deliveries)).toBe("1");
      expect(calls).toBe(0);
    });

    it("dead-letters an event still failing transiently after maxDeliver deliveries", async () => {
      const f = fixture();
      f.relay().start();
      const deliveries: number[] = [];
      const consumer = f.consumer({
        handler: {
          external: async (_e, ctx) => {
            deliveries.push(ctx.deliveryCount);
            throw new TransientError("still down");
          },
        },
      });
      consumer.start();
      const sent = f.createItem();
      await waitFor("dead-lettered", () => consumer.stats.deadLettered === 1);
      expect(deliveries).toEqual([1, 2, 3]);
      const dl = await deadLetter(`${f.prefix}-consumer`);
      expect(dl.header.get(DEADLETTER_HEADERS.eventId)).toBe(sent.id);
      expect(dl.header.get(DEADLETTER_HEADERS.reason)).toBe("still failing after 3 deliveries: still down");
      expect(dl.header.get(DEADLETTER_HEADERS.deliveries)).toBe("3");
    });
  });

  describe("relay and consumer together", () => {
    it("a relay crash between PubAck and mark republishes on restart; JetStream de-dup and the inbox leave one effect", async () => {
      const f = fixture();
      const consumer = f.consumer();
      consumer.start();
      const sent = [f.createItem(), f.createItem(), f.createItem()];
      let crashed = false;
      const crashing = f.relay({
        batchSize: 1, // one in flight: only the first event is in the stream at the crash
        hooks: {
          afterPubAck: () => {
            crashed = true;
            throw new Error("simulated crash after the PubAck, before the mark");
          },
        },
      });
      crashing.start();
      await waitFor("the crash", () => crashed);
      await crashing.stop();
      expect(crashing.backlog()).toBe(3); // nothing was marked

      const next = f.relay();
      next.start();
      await waitFor("backlog 0", () => next.backlog() === 0);
      expect(next.stats.duplicates).toBe(1); // the first event was already in the stream
      expect((await f.streamMessages()).length).toBe(3);
      await waitFor("3 effects", () => f.effectIds().length === 3);
      expect(f.effectIds()).toEqual(sent.map((e) => e.id));
    });

    it("a crash with a whole window published and unmarked republishes it in order; de-dup leaves each event once", async () => {
      const f = fixture();
      const consumer = f.consumer();
      consumer.start();
      const sent = Array.from({ length: 20 }, () => f.createItem());
      let crashed = false;
      const crashing = f.relay({
        hooks: {
          afterPubAck: (row) => {
            if (row.eventId !== sent[5]?.id) return;
            crashed = true;
            throw new Error("simulated crash after the 6th PubAck, before the mark");
          },
        },
      });
      crashing.start();
      await waitFor("the crash", () => crashed);
      await crashing.stop();
      expect(crashing.backlog()).toBe(15); // the five acknowledged before the crash are marked

      const next = f.relay();
      next.start();
      await waitFor("backlog 0", () => next.backlog() === 0);
      expect(next.stats.duplicates).toBe(15); // the whole window was already in the stream
      const ids = (await f.streamMessages()).map((m) => m.header?.get("Nats-Msg-Id"));
      expect(ids).toEqual(sent.map((e) => e.id));
      await waitFor("20 effects", () => f.effectIds().length === 20);
      expect(f.effectIds()).toEqual(sent.map((e) => e.id));
    });

    it("keeps commit order in the stream while another publisher writes to the same stream between its messages", async () => {
      const f = fixture();
      const sent = Array.from({ length: 300 }, () => f.createItem());
      const relay = f.relay({ batchSize: 64 });
      let flooding = true;
      const flood = (async () => {
        let i = 0;
        while (flooding) await f.publishRaw(new Uint8Array([1]), `foreign-${i++}`);
      })();
      relay.start();
      await waitFor("backlog 0", () => relay.backlog() === 0);
      flooding = false;
      await flood;
      const messages = await f.streamMessages();
      const ours = messages.map((m) => m.header?.get("Nats-Msg-Id")).filter((id) => !id?.startsWith("foreign-"));
      expect(ours).toEqual(sent.map((e) => e.id));
      expect(messages.length).toBeGreaterThan(ours.length); // the other publisher did get in between
    });

    it("past the duplicate window the republished copy is stored twice and the inbox still leaves one effect", async () => {
      const f = fixture({ duplicateWindowMs: 200 });
      const consumer = f.consumer();
      consumer.start();
      const sent = f.createItem();
      let ackedAt = 0;
      const crashing = f.relay({
        hooks: {
          afterPubAck: () => {
            ackedAt ||= Date.now();
            throw new Error("simulated crash after the PubAck, before the mark");
          },
        },
      });
      crashing.start();
      await waitFor("the crash", () => ackedAt > 0);
      await crashing.stop();
      await waitFor("the duplicate window to pass", () => Date.now() - ackedAt > 600);

      const next = f.relay();
      next.start();
      await waitFor("backlog 0", () => next.backlog() === 0);
      expect(next.stats.duplicates).toBe(0);
      expect((await f.streamMessages()).length).toBeGreaterThanOrEqual(2);
      await waitFor("the copy handled", () => consumer.stats.duplicates >= 1);
      expect(f.effectIds()).toEqual([sent.id]);
    });

    it("keeps accepting writes while nats-server is down and delivers every event after it returns", async () => {
      const f = fixture();
      const relay = f.relay();
      relay.start();
      const consumer = f.consumer();
      consumer.start();
      const before = f.createItem();
      await waitFor("first effect", () => f.effectIds().length === 1);
      expect(natsReady(f.link)).toBe(true);

      await nats.kill("SIGTERM");
      await waitFor("the link to notice", () => !natsReady(f.link) && !relay.connected);
      // Writes keep committing for ~1.5 s of outage; the relay waits instead of failing them.
      const during: Envelope[] = [];
      for (let i = 0; i < 10; i++) {
        during.push(f.createItem());
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(relay.backlog()).toBe(10);
      expect(f.effectIds()).toHaveLength(1);

      await nats.restart(); // same port, same store directory
      await waitFor("reconnect", () => natsReady(f.link), 15_000);
      await waitFor("backlog 0", () => relay.backlog() === 0, 15_000);
      await waitFor("11 effects", () => f.effectIds().length === 11, 15_000);
      expect(f.effectIds()).toEqual([before, ...during].map((e) => e.id));
      expect((await f.streamMessages()).length).toBe(11);
    });
  });
});

describe("NatsLink", () => {
  it("does not block start-up while NATS is unreachable, reports not ready, and connects once it appears", async () => {
    const port = await freePort();
    const link = new NatsLink({ servers: `nats://127.0.0.1:${port}`, name: "late", logger, reconnectTimeWaitMs: 200 });
    let server: NatsServer | undefined;
    try {
      expect(natsReady(link)).toBe(false);
      await new Promise((r) => setTimeout(r, 300)); // a few failed attempts
      expect(natsReady(link)).toBe(false);
      server = await startNats({ port });
      await waitFor("the link to connect", () => natsReady(link));
      await expect(link.connection()).resolves.toBeDefined();
    } finally {
      await link.close();
      await server?.stop();
    }
  });

  it("rejects connection() when closed before it ever connected", async () => {
    const link = new NatsLink({ servers: "nats://127.0.0.1:1", name: "nowhere", logger });
    await link.close();
    await expect(link.connection()).rejects.toThrow(/closed before it connected/);
    expect(natsReady(link)).toBe(false);
  });
});
