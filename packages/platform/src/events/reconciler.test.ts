import { join } from "node:path";
import { create, fromBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, UserDeletedSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../db/database.js";
import { createLogger } from "../log/logger.js";
import { type NatsServer, startNats, tempDir, waitFor } from "../testing/index.js";
import { NatsLink } from "./nats-link.js";
import { appendEvent, newEvent, outboxMigration } from "./outbox.js";
import { OutboxReconciler, outboxStreamSeqMigration } from "./reconciler.js";
import { OutboxRelay } from "./relay.js";
import type { StreamSpec } from "./streams.js";

const logger = createLogger("reconciler-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const STREAM: StreamSpec = { name: "RECON", subjects: ["taskmesh.user.>"] };

describe("OutboxReconciler", () => {
  const dir = tempDir("taskmesh-reconciler-");
  let nats: NatsServer;
  let link: NatsLink;
  let relay: OutboxRelay;
  const db = openDatabase(join(dir.path, "r.db"), [outboxMigration(1), outboxStreamSeqMigration(2)]);

  beforeAll(async () => {
    nats = await startNats();
    link = new NatsLink({ servers: nats.url, name: "reconciler-test", logger });
    relay = new OutboxRelay({ db, link, logger, streams: [STREAM], pollIntervalMs: 100 });
    relay.start();
  });
  afterAll(async () => {
    await relay.stop();
    await link.close();
    db.close();
    await nats.stop();
    dir.remove();
  });

  const ids: string[] = [];
  async function publish(n: number) {
    for (let i = 0; i < n; i++) {
      db.transaction(() => {
        const e = newEvent({
          userId: `u${ids.length}`,
          aggregateId: `u${ids.length}`,
          payload: { case: "userDeleted", value: create(UserDeletedSchema, { userId: `u${ids.length}` }) },
        });
        ids.push(e.id);
        appendEvent(db, e);
      })();
    }
    await waitFor("the relay to publish the outbox", () => relay.backlog() === 0);
  }

  /** Event ids in the stream, from the envelopes themselves (a republish may carry another Nats-Msg-Id). */
  async function idsInStream(): Promise<string[]> {
    const jsm = await link.jetstreamManager();
    const info = await jsm.streams.info(STREAM.name);
    const out: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      try {
        const m = await jsm.streams.getMessage(STREAM.name, { seq });
        out.push(fromBinary(EnvelopeSchema, m.data).id);
      } catch {
        // deleted
      }
    }
    return out;
  }

  it("records each PubAck's stream sequence and republishes nothing while the stream holds every event", async () => {
    await publish(30);
    const seqs = db.prepare("SELECT stream_seq FROM outbox ORDER BY seq").pluck().all() as number[];
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const r = new OutboxReconciler({ db, link, logger, streams: [STREAM], batchSize: 1000 });
    expect(await r.reconcileOnce()).toEqual({ checked: 30, republished: 0 });
    expect(await idsInStream()).toEqual(ids);
  });

  it("republishes exactly the acknowledged events the stream lost, once, and they reach the stream again", async () => {
    const jsm = await link.jetstreamManager();
    // Behind the service's back: JetStream loses three acknowledged messages (a message delete,
    // as a power cut with lazy fsync or a restored older store would).
    for (const seq of [3, 17, 30]) await jsm.streams.deleteMessage(STREAM.name, seq, false);
    const lost = [ids[2], ids[16], ids[29]];
    expect(await idsInStream()).not.toEqual(expect.arrayContaining(lost));

    const r = new OutboxReconciler({ db, link, logger, streams: [STREAM], batchSize: 1000 });
    expect(await r.reconcileOnce()).toEqual({ checked: 30, republished: 3 });
    const after = await idsInStream();
    expect([...after].sort()).toEqual([...ids].sort());
    // The repaired rows now point at their new messages: a second pass finds nothing to do.
    expect(await r.reconcileOnce()).toEqual({ checked: 30, republished: 0 });
    expect((await idsInStream()).length).toBe(30);
  });

  it("checks in bounded batches, continuing where the last pass stopped", async () => {
    const r = new OutboxReconciler({ db, link, logger, streams: [STREAM], batchSize: 12 });
    const passes = [];
    for (let i = 0; i < 4; i++) passes.push((await r.reconcileOnce()).checked);
    expect(passes).toEqual([12, 12, 6, 12]);
  });

  it("leaves rows published before the horizon alone", async () => {
    const r = new OutboxReconciler({ db, link, logger, streams: [STREAM], horizonMs: 1 });
    await new Promise((res) => setTimeout(res, 10));
    expect(await r.reconcileOnce()).toEqual({ checked: 0, republished: 0 });
  });
});
