import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../db/database.js";
import { createLogger } from "../log/logger.js";
import { type NatsServer, startNats, tempDir, waitFor } from "../testing/index.js";
import { inboxMigration } from "./inbox.js";
import { ServiceEvents } from "./service-events.js";
import { STREAMS } from "./streams.js";
import { userDeletedConsumer } from "./user-deleted.js";

const logger = createLogger("service-events-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });

describe("ServiceEvents of a service that only consumes", () => {
  const dir = tempDir("taskmesh-service-events-");
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats.stop();
    dir.remove();
  });

  it("connects only on start(), calls onConnect once connected, mirrors the link as the 'nats' health entry, and reports NOT_SERVING once stopped", async () => {
    const db = openDatabase(join(dir.path, "c.db"), [inboxMigration(1)]);
    const statuses: string[] = [];
    const health = { setStatus: (service: string, s: string) => service === "nats" && statuses.push(s) };
    // What natsReady said each time onConnect was called (a readiness re-check reads it there).
    const readyOnConnect: boolean[] = [];
    const events = new ServiceEvents({
      name: "consumer-only",
      servers: [nats.url],
      db,
      logger,
      health,
      onConnect: (): void => {
        readyOnConnect.push(events.natsReady);
      },
      consumers: { userDeleted: userDeletedConsumer("consumer-only", () => 0, logger) },
      healthMirrorIntervalMs: 100,
    });
    expect(events.natsConnected).toBe(false);
    expect(statuses).toEqual([]); // built, not started: nothing connects, nothing reported
    expect(events.backlog()).toBe(0); // no outbox: it publishes nothing

    events.start();
    expect(readyOnConnect).toEqual([]);
    await waitFor("the link to connect", () => events.natsReady);
    expect(readyOnConnect).toEqual([true]);
    await waitFor("the 'nats' entry to be SERVING", () => statuses.at(-1) === "SERVING");
    // The consumer is running: its durable exists on the stream.
    const jsm = await (await import("nats")).connect({ servers: nats.url });
    try {
      const m = await jsm.jetstreamManager();
      await waitFor("the durable consumer", () =>
        m.consumers.info(STREAMS.USERS.name, "consumer-only-user-deleted").then(
          () => true,
          () => false,
        ),
      );
    } finally {
      await jsm.close();
    }

    await events.stop();
    expect(statuses.at(-1)).toBe("NOT_SERVING");
    expect(events.natsConnected).toBe(false);
    db.close();
  });

  it("prunes each consumer's inbox past the retention it is given, and keeps what is younger", async () => {
    const db = openDatabase(join(dir.path, "r.db"), [inboxMigration(1)]);
    const events = new ServiceEvents({
      name: "retention",
      servers: [nats.url],
      db,
      logger,
      health: { setStatus: () => {} },
      consumers: { userDeleted: userDeletedConsumer("retention", () => 0, logger) },
      retention: { horizonMs: 2 * 86_400_000 },
    });
    const durable = "retention-user-deleted";
    const insert = db.prepare("INSERT INTO inbox (consumer, event_id, subject, processed_at) VALUES (?, ?, ?, ?)");
    const ago = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString();
    insert.run(durable, "old", "users.user.deleted", ago(3));
    insert.run(durable, "young", "users.user.deleted", ago(1));
    expect(await events.pruneInboxes()).toBe(0); // not started: no consumer, nothing pruned
    events.start();
    try {
      expect(await events.pruneInboxes()).toBe(1);
      const left = db.prepare("SELECT event_id FROM inbox WHERE consumer = ?").all(durable) as { event_id: string }[];
      expect(left.map((r) => r.event_id)).toEqual(["young"]);
    } finally {
      await events.stop();
      db.close();
    }
  });
});
