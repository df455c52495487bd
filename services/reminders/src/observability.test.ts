import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import {
  appendEvent,
  createLogger,
  type Db,
  ensureStreams,
  NatsLink,
  OutboxRelay,
  openDatabase,
  outboxMigration,
  STREAMS,
  startTelemetry,
  type Telemetry,
} from "@taskmesh/platform";
import { InMemorySpanExporter, type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadRemindersConfig } from "./config.js";
import { events, task } from "./reminders.test-util.js";
import { MIGRATIONS } from "./reminders-store.js";
import { timerEventId } from "./scheduler.js";
import { build, type RemindersApp } from "./server.js";

const logger = createLogger("reminders-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "reminders-test-secret-of-at-least-32-chars";
const MIN = 60_000;
/** @opentelemetry/api SpanKind values, as ReadableSpan.kind carries them. */
const PRODUCER = 3;
const CONSUMER = 4;

type Span = ReturnType<InMemorySpanExporter["getFinishedSpans"]>[number];

/** A sampled W3C traceparent of a made-up upstream span (the request that changed the task). */
function upstream(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The value of the sample `name` without labels; undefined when the series is absent. */
function sample(scrape: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, "m").exec(scrape);
  return m ? Number(m[1]) : undefined;
}

describe("reminders observability (real nats-server, spans in memory, Prometheus scrape)", () => {
  const dir = tempDir("reminders-obs-");
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  let nats: NatsServer;
  let admin: NatsLink;
  /** Stands in for tasks: its outbox and relay publish task events as tasks' do, in a PRODUCER span. */
  let producer: { db: Db; relay: OutboxRelay; link: NatsLink };
  let app: RemindersApp | undefined;
  let dbPath = "";
  /** The service's clock. */
  let now = Date.parse("2031-06-01T08:00:00Z");

  async function start(db = dbPath): Promise<RemindersApp> {
    dbPath = db;
    const config = loadRemindersConfig({
      GRPC_PORT: "0",
      TASKMESH_DATA_DIR: dir.path,
      DB_PATH: dbPath,
      NATS_URL: nats.url,
      TASKMESH_SERVICE_SECRET: SECRET,
      LOG_LEVEL: "silent",
    });
    const started = build(config, { logger, clock: () => now, relayPollIntervalMs: 100 });
    await started.listen();
    app = started;
    return started;
  }

  async function stop(): Promise<void> {
    await app?.shutdown();
    app = undefined;
  }

  beforeAll(async () => {
    telemetry = await startTelemetry({ serviceName: "reminders", spanExporter: exporter, metricsPort: 0 });
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger, reconnectTimeWaitMs: 100 });
    await ensureStreams(await admin.jetstreamManager(), [STREAMS.TASKS, STREAMS.USERS, STREAMS.REMINDERS]);
    const db = openDatabase(join(dir.path, "producer.db"), [outboxMigration(1)]);
    const link = new NatsLink({ servers: nats.url, name: "test-producer", logger, reconnectTimeWaitMs: 100 });
    producer = {
      db,
      link,
      relay: new OutboxRelay({ db, link, logger, streams: [STREAMS.TASKS], pollIntervalMs: 100 }),
    };
    producer.relay.start();
  });
  afterEach(stop);
  afterAll(async () => {
    await producer?.relay.stop();
    await producer?.link.close();
    producer?.db.close();
    await admin?.close();
    await nats?.stop();
    await telemetry?.shutdown();
    dir.remove();
  });

  /** Publishes a task event through the producer's outbox, in the trace of `traceparent`. */
  function produce(event: Envelope, traceparent?: string): void {
    producer.db.transaction(() => appendEvent(producer.db, event, traceparent ? { traceparent } : {}))();
  }

  /** Waits until the running app has applied `n` task events. */
  async function applied(n: number): Promise<void> {
    await waitFor(`${n} task events applied`, () => (app?.stats().tasks.applied ?? 0) >= n);
  }

  const spans = () => exporter.getFinishedSpans();
  const parentOf = (s: Span) => s.parentSpanContext?.spanId;
  const publishOf = (eventId: string) =>
    spans().find((s) => s.name === "taskmesh.reminder.due publish" && s.attributes["messaging.message.id"] === eventId);

  /** The traceparent header of the message `eventId` on the REMINDERS stream. */
  async function headerOf(eventId: string): Promise<string | undefined> {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.REMINDERS.name);
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.REMINDERS.name, { seq });
      if (fromBinary(EnvelopeSchema, m.data).id === eventId) return m.header?.get("traceparent") || undefined;
    }
    return undefined;
  }

  it("a reminder that fires after a restart is published in the trace of the task event that scheduled it", async () => {
    await start(join(dir.path, `${randomUUID()}.db`));
    const up = upstream();
    const due = now + 60 * MIN;
    const t = task({ userId: randomUUID(), due, offsets: [30 * 60], version: 1 });
    produce(events.created(t), up.traceparent);
    await applied(1);

    // Hours later, in another process: the context comes from the database, not from memory.
    await stop();
    now += 40 * MIN;
    await start(); // listen() ticks at once: the reminder (not the due time) fires
    const reminderId = timerEventId({ taskId: t.id, kind: "reminder", offsetSeconds: 30 * 60, dueTime: due });
    const published = await waitFor("the reminder.due publish span", () => publishOf(reminderId));

    const inTrace = spans().filter((s) => s.spanContext().traceId === up.traceId);
    const taskPublish = inTrace.find((s) => s.name === "taskmesh.task.created publish");
    const consumed = inTrace.find((s) => s.name === "taskmesh.task.created process");
    expect(taskPublish?.kind).toBe(PRODUCER);
    expect(taskPublish && parentOf(taskPublish)).toBe(up.spanId);
    expect(consumed?.kind).toBe(CONSUMER);
    expect(consumed?.attributes["messaging.consumer.group.name"]).toBe("reminders-tasks");
    expect(consumed && parentOf(consumed)).toBe(taskPublish?.spanContext().spanId);
    // The publish of the fired reminder: same trace, child of the consumer span that scheduled it.
    expect(published.kind).toBe(PRODUCER);
    expect(published.spanContext().traceId).toBe(up.traceId);
    expect(parentOf(published)).toBe(consumed?.spanContext().spanId);
    // ... and the message carries it on to notifications.
    expect(await headerOf(reminderId)).toBe(`00-${up.traceId}-${published.spanContext().spanId}-01`);
  });

  it("a timer with no stored context does not join the trace of the task event that woke the scheduler", async () => {
    await start(join(dir.path, `${randomUUID()}.db`));
    const first = upstream();
    const due = now + 60 * MIN;
    const t1 = task({ userId: randomUUID(), due, offsets: [30 * 60], version: 1 });
    produce(events.created(t1), first.traceparent);
    await applied(1);
    // As if stored before migration 4.
    const db = openDatabase(dbPath, MIGRATIONS);
    db.prepare("UPDATE timers SET traceparent = NULL WHERE task_id = ?").run(t1.id);
    db.close();

    // t1's reminder is due by the clock, but the scheduler sleeps (up to a minute) until woken:
    // t2's event wakes it, from inside t2's consumer span.
    now += 35 * MIN;
    const second = upstream();
    const t2 = task({ userId: randomUUID(), due: now + 600 * MIN, version: 1 });
    produce(events.created(t2), second.traceparent);
    const reminderId = timerEventId({ taskId: t1.id, kind: "reminder", offsetSeconds: 30 * 60, dueTime: due });
    const published = await waitFor("t1's reminder.due publish span", () => publishOf(reminderId));

    // A trace of its own: not t2's (whose event woke the scheduler), not t1's (the context was dropped).
    expect(parentOf(published)).toBeUndefined();
    expect([first.traceId, second.traceId]).not.toContain(published.spanContext().traceId);
  });

  it("taskmesh_reminders_pending counts the timers scheduled and not yet fired", async () => {
    await start(join(dir.path, `${randomUUID()}.db`));
    const scrape = async () => (await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`)).text();
    // The series exists (sample() reads absent as undefined, not 0).
    expect(sample(await scrape(), "taskmesh_reminders_pending")).toBe(0);

    const userId = randomUUID();
    const a = task({ userId, due: now + 60 * MIN, offsets: [10 * 60, 30 * 60], version: 1 });
    const b = task({ userId, due: now + 120 * MIN, version: 1 });
    produce(events.created(a));
    produce(events.created(b));
    await applied(2);
    // a: two reminders and its due time; b: its due time.
    expect(sample(await scrape(), "taskmesh_reminders_pending")).toBe(4);

    now += 35 * MIN;
    expect(app?.tick()).toBe(1); // a's 30-minute reminder
    expect(sample(await scrape(), "taskmesh_reminders_pending")).toBe(3);

    produce(events.completed({ ...b, version: 2n }));
    await applied(3);
    expect(sample(await scrape(), "taskmesh_reminders_pending")).toBe(2);

    now += 60 * MIN;
    expect(app?.tick()).toBe(2); // a's 10-minute reminder and its due time
    expect(sample(await scrape(), "taskmesh_reminders_pending")).toBe(0);
  });
});
