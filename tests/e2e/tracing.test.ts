// Issue 5, first "done when": ONE request through the gateway creates a task with a reminder a
// few seconds ahead, and ONE trace runs from the edge to the last consumer — gateway → tasks →
// NATS → reminders → (timer) → NATS → notifications — with every parent link as the code makes it.
//
// The system runs as deployed: every service a real process started by the runner, each exporting
// its spans over OTLP/HTTP JSON to an in-memory receiver in this process. So the context really
// crosses the process boundaries: gRPC metadata (gateway → tasks), NATS message headers (tasks →
// reminders, reminders → notifications) and the reminders database (the timer keeps the context of
// the event that scheduled it and fires seconds — or hours — later in that trace).
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Kind, NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { TRACE_ID_HEADER } from "@taskmesh/platform";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver, waitFor } from "@taskmesh/platform/testing";
import { builtServices } from "@taskmesh/runner";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2E, startE2E } from "./harness.js";

const NEEDED = ["users", "tasks", "gateway", "reminders", "notifications"];

/** OTLP SpanKind numbers, as the receiver reports them. */
const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;
const KIND_NAMES: Record<number, string> = { 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER" };

/** One span of the chain: which process made it, its kind and name. */
interface Hop {
  service: string;
  kind: number;
  name: string;
}

const hop = (service: string, kind: number, name: string): Hop => ({ service, kind, name });
const describeHop = (h: Hop) => `${h.service} ${KIND_NAMES[h.kind] ?? h.kind} "${h.name}"`;

/** The spans of a trace as an indented tree, with ids (for failure messages). */
function tree(spans: readonly ReceivedSpan[]): string {
  const ids = new Set(spans.map((s) => s.spanId));
  const lines: string[] = [];
  const walk = (s: ReceivedSpan, depth: number) => {
    lines.push(`${"  ".repeat(depth)}${describeHop(s)} ${s.spanId} ← ${s.parentSpanId || "(root)"}`);
    for (const child of spans.filter((x) => x.parentSpanId === s.spanId)) walk(child, depth + 1);
  };
  for (const root of spans.filter((s) => !ids.has(s.parentSpanId))) walk(root, 0);
  return lines.join("\n");
}

let receiver: OtlpReceiver;
let e2e: E2E;
beforeAll(async () => {
  const missing = NEEDED.filter((n) => !(builtServices() as string[]).includes(n));
  if (missing.length > 0) throw new Error(`the trace needs these services built (TOPOLOGY): ${missing.join(", ")}`);
  receiver = await startOtlpReceiver();
  e2e = await startE2E({
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      // The BatchSpanProcessor honours it (sdk-trace-base's env fallback): spans arrive within
      // ~200 ms of ending instead of the default 5 s, so the test polls instead of sleeping.
      OTEL_BSP_SCHEDULE_DELAY: "200",
    },
  });
});
afterAll(async () => {
  await e2e?.stop();
  await receiver?.close();
});

describe("one trace from the edge to the last consumer", () => {
  it("a task created through the gateway, its reminder fired by reminders and delivered by notifications, are one trace with every parent link", async () => {
    const transport = createGrpcTransport({ baseUrl: e2e.system.endpoints.gateway });
    const users = createClient(UserService, transport);
    const tasks = createClient(TaskService, transport);
    const inbox = createClient(NotificationService, transport);

    const email = `trace-${crypto.randomUUID()}@example.com`;
    const password = "correct-horse-battery";
    await users.register({ email, password });
    const token = (await users.login({ email, password })).accessToken;
    const auth = { headers: { authorization: `Bearer ${token}` } };

    // Due in ~5 s (whole seconds), reminded 3 s before: the reminder fires ~2 s from now.
    const dueMs = Math.ceil((Date.now() + 5000) / 1000) * 1000;
    let traceId = "";
    const created = await tasks.createTask(
      {
        task: {
          title: "Trace the reminder",
          dueTime: timestampFromMs(dueMs),
          timeZone: "UTC",
          reminderOffsets: [{ seconds: 3n }],
        },
      },
      { ...auth, onHeader: (h) => (traceId = h.get(TRACE_ID_HEADER) ?? "") },
    );
    const taskId = created.task?.id ?? "";
    expect(taskId).not.toBe("");
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);

    // The reminder reaches the in-app inbox.
    await waitFor(
      "the reminder in the in-app inbox",
      async () =>
        (await inbox.listNotifications({}, auth)).notifications.find(
          (n) => n.kind === Kind.REMINDER && n.taskId === taskId,
        ),
      20_000,
    );

    // The chain, edge first. Each hop is the direct child of the one before it (so there is no
    // span between them), all in the trace whose id the gateway answered in x-trace-id.
    const chain: Hop[] = [
      hop("gateway", SERVER, "taskmesh.tasks.v1.TaskService/CreateTask"), // edge interceptor
      hop("gateway", CLIENT, "grpc.taskmesh.tasks.v1.TaskService/CreateTask"), // grpc-js instrumentation
      hop("tasks", SERVER, "grpc.taskmesh.tasks.v1.TaskService/CreateTask"), // grpc-js instrumentation
      hop("tasks", PRODUCER, "taskmesh.task.created publish"), // outbox relay (context stored with the row)
      hop("reminders", CONSUMER, "taskmesh.task.created process"), // reminders-tasks consumer (stores it with the timers)
      hop("reminders", PRODUCER, "taskmesh.reminder.due publish"), // relay, in the context the timer stored
      hop("notifications", CONSUMER, "taskmesh.reminder.due process"), // delivers the in-app notification
    ];
    const inTrace = () => receiver.spans().filter((s) => s.traceId === traceId);
    const find = (h: Hop) => inTrace().filter((s) => s.service === h.service && s.kind === h.kind && s.name === h.name);
    // Services export in batches (every ~200 ms here): wait until every hop has arrived.
    await waitFor("every span of the chain at the receiver", () => chain.every((h) => find(h).length > 0), {
      timeoutMs: 15_000,
      detail: () =>
        `\nmissing: ${chain
          .filter((h) => find(h).length === 0)
          .map(describeHop)
          .join("; ")}\ntrace ${traceId}:\n${tree(inTrace())}\nall services seen: ${[
          ...new Set(receiver.spans().map((s) => s.service)),
        ].join(", ")}`,
    });

    const spans = inTrace();
    const why = `trace ${traceId}:\n${tree(spans)}`;
    let parent: ReceivedSpan | undefined;
    for (const h of chain) {
      const matches = find(h);
      expect(matches.map(describeHop), `exactly one ${describeHop(h)}\n${why}`).toHaveLength(1);
      const span = matches[0] as ReceivedSpan;
      // The resource says which process made it.
      expect(span.service, why).toBe(h.service);
      if (parent === undefined) {
        // The edge span is the root: the client sent no traceparent.
        expect(span.parentSpanId, `${describeHop(h)} is the root\n${why}`).toBe("");
      } else {
        expect(span.parentSpanId, `${describeHop(h)} is the child of ${describeHop(parent)}\n${why}`).toBe(
          parent.spanId,
        );
      }
      parent = span;
    }

    // Branches off the consumer that delivered: its preference lookup at users (a gRPC call made
    // in the consumer span) and its own notification.sent event (published in that context).
    const branches: Array<[Hop, Hop]> = [
      [chain[6] as Hop, hop("notifications", CLIENT, "grpc.taskmesh.users.v1.UserInternalService/GetUserPreferences")],
      [
        hop("notifications", CLIENT, "grpc.taskmesh.users.v1.UserInternalService/GetUserPreferences"),
        hop("users", SERVER, "grpc.taskmesh.users.v1.UserInternalService/GetUserPreferences"),
      ],
      [chain[6] as Hop, hop("notifications", PRODUCER, "taskmesh.notification.sent publish")],
    ];
    await waitFor("the branches' spans at the receiver", () => branches.every(([, h]) => find(h).length > 0), {
      timeoutMs: 15_000,
      detail: () => `\n${tree(inTrace())}`,
    });
    for (const [p, h] of branches) {
      const [child, ...more] = find(h);
      const [of] = find(p);
      expect([describeHop(h), more.length], why).toEqual([describeHop(h), 0]);
      expect(child?.parentSpanId, `${describeHop(h)} is the child of ${describeHop(p)}\n${tree(inTrace())}`).toBe(
        of?.spanId,
      );
    }

    // What the spans say about the messages they handled.
    const [, , , taskCreated, , reminderDue, delivered] = chain.map((h) => find(h)[0] as ReceivedSpan);
    expect(taskCreated?.attributes["messaging.destination.name"]).toBe("taskmesh.task.created");
    expect(reminderDue?.attributes["messaging.destination.name"]).toBe("taskmesh.reminder.due");
    expect(delivered?.attributes["messaging.consumer.group.name"]).toBe("notifications-reminder-due");
    expect(delivered?.attributes["taskmesh.outcome"]).toBe("applied");
  }, 60_000);
});
