// Fault injection with real processes: nats-server and every built service started as `npm start`
// starts them, driven through the gateway over gRPC; crashes are real SIGKILLs, placed by the
// platform's fault drill hooks (TASKMESH_FAULT, packages/platform/src/events/fault-drill.ts).
// Every scenario ends with the delivery checker: every event of its tasks delivered and applied
// exactly once, in every consumer.
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { DEADLETTER_HEADERS } from "@taskmesh/platform";
import { FAULT_ENV } from "@taskmesh/platform/testing";
import { connect, type JetStreamManager, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectEveryEventOnce, readProduced } from "./checker.js";
import {
  checkOptions,
  type Drill,
  querySqlite,
  retryUnavailable,
  signUp,
  startDrill,
  waitFor,
  waitForExit,
} from "./drill.js";

let drill: Drill;
beforeAll(async () => {
  drill = await startDrill();
}, 90_000);
afterAll(async () => {
  await drill?.stop();
});

const tag = () => randomUUID().slice(0, 8);

/** Stream sequence of the message carrying `eventId` in TASKS, or undefined. */
async function streamSeqOf(jsm: JetStreamManager, eventId: string): Promise<number | undefined> {
  const info = await jsm.streams.info("TASKS");
  for (let seq = info.state.last_seq; seq >= info.state.first_seq && seq > 0; seq--) {
    try {
      const m = await jsm.streams.getMessage("TASKS", { seq });
      if (m.header?.get("Nats-Msg-Id") === eventId) return seq;
    } catch {}
  }
  return undefined;
}

describe("SIGKILL of the producer between publish and mark-published", () => {
  it("loses no event and doubles no effect: the republish is absorbed, each task applied once everywhere", async () => {
    drill.exits.length = 0;
    const t = tag();
    // Armed on a fresh start of tasks: its relay dies right after its 5th PubAck.
    await drill.system.restart("tasks", { env: { [FAULT_ENV]: "relay:exit-after-puback:5" } });
    const me = await signUp(drill.system.endpoints.gateway);
    const [a, b, c, d] = [
      await retryUnavailable(() => me.createTask(`crash ${t} one`)),
      await me.createTask(`crash ${t} two`),
      await me.createTask(`crash ${t} three`),
      await me.createTask(`crash ${t} four`),
    ].map((x) => x.id) as [string, string, string, string];
    // Wait until the four task.created are published (four PubAcks), so the 5th is this completion.
    await waitFor("the four creates to be published", () => {
      const [row] = querySqlite<{ n: number }>(
        drill,
        "tasks",
        "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL",
      );
      return row?.n === 0 ? true : undefined;
    });
    // The answer may or may not get out before the relay's SIGKILL; the commit happened either way.
    await me.completeTask(a).catch(() => undefined);
    expect(await waitForExit(drill, "tasks")).toBe("tasks: killed by SIGKILL");

    // Killed at the exact point: the completion is in the stream, yet still unpublished in the outbox.
    const pending = querySqlite<{ eventId: string; subject: string }>(
      drill,
      "tasks",
      "SELECT event_id AS eventId, subject FROM outbox WHERE published_at IS NULL ORDER BY seq",
    );
    expect(pending.map((p) => p.subject)).toEqual(["taskmesh.task.completed"]);
    const nc = await connect({ servers: drill.system.endpoints.nats });
    try {
      expect(await streamSeqOf(await nc.jetstreamManager(), pending[0]?.eventId as string)).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }

    await drill.system.restart("tasks", { env: { [FAULT_ENV]: undefined } });
    await retryUnavailable(() => me.completeTask(b));
    await me.updateNotes(c, "edited after the crash");
    await me.deleteTask(d);

    const report = await expectEveryEventOnce(checkOptions(drill, [me], [a, b, c, d]), 45_000);
    // Every consumer of TASKS was checked (a checker that sees none would pass vacuously).
    expect(report.consumers).toEqual([
      expect.stringMatching(/^analytics-.+-tasks$/),
      "recurrence-task-completed",
      "reminders-tasks",
    ]);
    const children = (await me.listTasks()).filter((x) => x.parentTaskId !== "");
    expect(children.map((x) => x.parentTaskId).sort()).toEqual([a, b].sort());
  }, 90_000);
});

describe("nats-server stopped for 10 s", () => {
  it("keeps accepting creates through the gateway, and delivers every event once it is back", async () => {
    const t = tag();
    const me = await signUp(drill.system.endpoints.gateway);
    const first = await me.createTask(`outage ${t} before`);
    await drill.system.kill("nats", "SIGTERM");

    const created: string[] = [];
    const start = Date.now();
    for (let i = 0; Date.now() - start < 10_000; i++) {
      created.push((await me.createTask(`outage ${t} during ${i}`)).id);
      await new Promise((r) => setTimeout(r, 700));
    }
    await me.completeTask(first.id);
    expect(created.length).toBeGreaterThanOrEqual(8);
    // They wait in the outbox: nothing can have been published.
    const [row] = querySqlite<{ n: number }>(
      drill,
      "tasks",
      "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL",
    );
    expect(row?.n).toBeGreaterThanOrEqual(created.length + 1);

    await drill.system.restart("nats");
    await expectEveryEventOnce(checkOptions(drill, [me], [first.id, ...created]), 60_000);
  }, 120_000);
});

describe("JetStream loses messages it had acknowledged (deleted behind the services' backs)", () => {
  it("the outbox reconciler publishes them again; every consumer applies every event once", async () => {
    drill.exits.length = 0;
    const t = tag();
    // A short reconcile interval on the producer; the consumers of TASKS are down while the
    // broker "loses" the messages, so they can only get them from the republish.
    await drill.system.restart("tasks", { env: { OUTBOX_RECONCILE_INTERVAL_MS: "500" } });
    const consumers = ["analytics", "reminders", "recurrence"];
    for (const name of consumers) await drill.system.kill(name, "SIGTERM");
    const me = await signUp(drill.system.endpoints.gateway);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push((await retryUnavailable(() => me.createTask(`lost ${t} ${i}`))).id);
    for (const id of ids.slice(0, 3)) await me.completeTask(id);
    await waitFor("the outbox to be published", () => {
      const [row] = querySqlite<{ n: number }>(
        drill,
        "tasks",
        "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL",
      );
      return row?.n === 0 ? true : undefined;
    });

    // Acknowledged, then gone: two creations and one completion, as after a power cut with lazy
    // fsync or a store restored from an older copy.
    const nc = await connect({ servers: drill.system.endpoints.nats });
    try {
      const jsm = await nc.jetstreamManager();
      const before = await readProduced(jsm);
      const victims = before.events.filter(
        (e) =>
          (e.type === "task.created" && (e.taskId === ids[4] || e.taskId === ids[6])) ||
          (e.type === "task.completed" && e.taskId === ids[1]),
      );
      expect(victims).toHaveLength(3);
      for (const v of victims) await jsm.streams.deleteMessage("TASKS", v.streamSeq, false);
      // The reconciler finds them missing at their recorded sequence and publishes them again.
      await waitFor("the lost events back in the stream", async () => {
        const now = new Set((await readProduced(jsm)).events.map((e) => e.eventId));
        return victims.every((v) => now.has(v.eventId)) ? true : undefined;
      });
      const republished = querySqlite<{ n: number }>(
        drill,
        "tasks",
        `SELECT count(*) AS n FROM outbox WHERE event_id IN (${victims.map(() => "?").join(",")}) AND stream_seq > ?`,
        ...victims.map((v) => v.eventId),
        before.lastSeq,
      );
      expect(republished[0]?.n).toBe(3);
    } finally {
      await nc.close();
    }

    for (const name of consumers) await drill.system.restart(name);
    const report = await expectEveryEventOnce(checkOptions(drill, [me], ids), 60_000);
    expect(report.consumers).toEqual([
      expect.stringMatching(/^analytics-.+-tasks$/),
      "recurrence-task-completed",
      "reminders-tasks",
    ]);
    expect(drill.exits).toEqual([]);
    await drill.system.restart("tasks", { env: { OUTBOX_RECONCILE_INTERVAL_MS: undefined } });
  }, 150_000);
});

describe("a consumer SIGKILLed mid-handler", () => {
  it("recurrence: the occurrence made before the crash is the only one after the redelivery", async () => {
    drill.exits.length = 0;
    const t = tag();
    await drill.system.restart("recurrence", {
      env: { [FAULT_ENV]: "consumer:recurrence-task-completed:exit-mid-handler:1" },
    });
    const me = await signUp(drill.system.endpoints.gateway);
    const r = await me.createTask(`midway ${t} daily`);
    await me.completeTask(r.id);
    expect(await waitForExit(drill, "recurrence")).toBe("recurrence: killed by SIGKILL");

    // Died after its external effect (the occurrence exists in tasks) and before its commit.
    const children = (await me.listTasks()).filter((x) => x.parentTaskId === r.id);
    expect(children).toHaveLength(1);
    const nc = await connect({ servers: drill.system.endpoints.nats });
    const produced = await readProduced(await nc.jetstreamManager()).finally(() => nc.close());
    const completion = produced.events.find((e) => e.taskId === r.id && e.type === "task.completed");
    expect(completion).toBeDefined();
    expect(querySqlite(drill, "recurrence", "SELECT 1 FROM inbox WHERE event_id = ?", completion?.eventId)).toEqual([]);

    await drill.system.restart("recurrence", { env: { [FAULT_ENV]: undefined } });
    const s = await me.createTask(`midway ${t} after`);
    await me.completeTask(s.id);
    // The unacknowledged event comes back after the consumer's ack wait (30 s).
    await expectEveryEventOnce(checkOptions(drill, [me], [r.id, s.id]), 60_000);
    expect((await me.listTasks()).filter((x) => x.parentTaskId === r.id).map((x) => x.id)).toEqual([children[0]?.id]);
  }, 120_000);
});

describe("a poison event", () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: drill.system.endpoints.nats });
  });
  afterAll(async () => {
    await nc?.close();
  });

  /** Dead letters whose original is `seq` of TASKS, by consumer, with their reason. */
  async function deadLettersOf(seq: number): Promise<Map<string, string>> {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info("DEADLETTER");
    const found = new Map<string, string>();
    for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
      const m = await jsm.streams.getMessage("DEADLETTER", { seq: s }).catch(() => undefined);
      if (m?.header?.get(DEADLETTER_HEADERS.stream) !== "TASKS") continue;
      if (m.header.get(DEADLETTER_HEADERS.streamSeq) !== String(seq)) continue;
      found.set(m.header.get(DEADLETTER_HEADERS.consumer), m.header.get(DEADLETTER_HEADERS.reason));
    }
    return found;
  }

  it("lands in the dead-letter stream with its reason, and every consumer carries on", async () => {
    const js = nc.jetstream();
    const jsm = await nc.jetstreamManager();
    const consumers = (await jsm.consumers.list("TASKS").next()).map((c) => c.config.durable_name ?? c.name);
    const everyTask = consumers.filter((c) => !c.startsWith("recurrence-"));

    // Not an Envelope at all: every consumer of task.created must dead-letter it.
    const junk = await js.publish("taskmesh.task.created", new TextEncoder().encode("\xff not protobuf"), {
      msgID: `poison-${randomUUID()}`,
    });
    // A well-formed Envelope recurrence refuses: a task.completed that carries no task.
    const id = randomUUID();
    const refused = await js.publish(
      "taskmesh.task.completed",
      toBinary(
        EnvelopeSchema,
        create(EnvelopeSchema, {
          id,
          type: "task.completed",
          userId: randomUUID(),
          aggregateId: randomUUID(),
          payload: { case: "taskCompleted", value: {} },
        }),
      ),
      { msgID: id },
    );

    const junkLetters = await waitFor(
      "the undecodable event in DEADLETTER for every consumer",
      async () => {
        const m = await deadLettersOf(junk.seq);
        return everyTask.every((c) => m.has(c)) ? m : undefined;
      },
      15_000,
    );
    for (const c of everyTask) expect(junkLetters.get(c)).toMatch(/^undecodable event: /);
    const refusedLetters = await waitFor(
      "the refused event in DEADLETTER for recurrence",
      async () => {
        const m = await deadLettersOf(refused.seq);
        return m.has("recurrence-task-completed") ? m : undefined;
      },
      15_000,
    );
    expect(refusedLetters.get("recurrence-task-completed")).toBe("handler failed: task.completed carries no task");

    // And the consumers go on with what follows.
    const me = await signUp(drill.system.endpoints.gateway);
    const t = await me.createTask(`poison ${tag()} after`);
    await me.completeTask(t.id);
    await expectEveryEventOnce(checkOptions(drill, [me], [t.id]), 30_000);
  }, 60_000);
});
