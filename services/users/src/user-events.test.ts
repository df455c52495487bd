import { fromBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { type Envelope, EnvelopeSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import {
  createGrpcClient,
  createLogger,
  NATS_HEALTH_SERVICE,
  NatsLink,
  STREAMS,
  startTelemetry,
  type Telemetry,
} from "@taskmesh/platform";
import { InMemorySpanExporter, type NatsServer, startNats, tempDir, waitFor } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadUsersConfig } from "./config.js";
import { build, type UsersApp } from "./server.js";

const logger = createLogger("users-events-test", { level: process.env.TEST_LOG_LEVEL ?? "silent" });
const SECRET = "test-secret-that-is-at-least-32-characters";
// Cheap scrypt: these tests are about events, not password cost.
const scrypt = { N: 1024, r: 8, p: 1 };
/** @opentelemetry/api SpanKind values, as ReadableSpan.kind carries them. */
const SERVER = 1;
const PRODUCER = 3;

async function started(dataDir: string, natsUrl: string) {
  const config = loadUsersConfig({
    GRPC_PORT: "0",
    JWKS_PORT: "0",
    TASKMESH_DATA_DIR: dataDir,
    TASKMESH_SERVICE_SECRET: SECRET,
    NATS_URL: natsUrl,
    LOG_LEVEL: "silent",
  });
  const app: UsersApp = build(config, { logger, scrypt, outboxReportIntervalMs: 200 });
  const { grpcPort } = await app.listen();
  const address = `127.0.0.1:${grpcPort}`;
  const users = createGrpcClient(UserService, { address });
  const health = createGrpcClient(Health, { address });
  return {
    app,
    users,
    health,
    async stop() {
      users.close();
      health.close();
      await app.shutdown();
    },
  };
}

let n = 0;
const uniqueEmail = () => `events${++n}-${Date.now()}@example.com`;

describe("users events (real nats-server)", () => {
  const dir = tempDir("users-events-");
  let nats: NatsServer;
  let admin: NatsLink;
  let s: Awaited<ReturnType<typeof started>>;
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;

  beforeAll(async () => {
    // As main.ts does (telemetry-register): the grpc-js instrumentation makes the handler's
    // SERVER span active, which the event's trace context comes from.
    telemetry = await startTelemetry({ serviceName: "users", spanExporter: exporter });
    nats = await startNats();
    admin = new NatsLink({ servers: nats.url, name: "test-admin", logger });
    s = await started(dir.path, nats.url);
  });
  afterAll(async () => {
    await s?.stop();
    await admin?.close();
    await nats?.stop();
    await telemetry?.shutdown();
    dir.remove();
  });

  /** Every message in the USERS stream, in stream order, decoded. */
  async function usersStream() {
    const jsm = await admin.jetstreamManager();
    const info = await jsm.streams.info(STREAMS.USERS.name);
    const out: { subject: string; envelope: Envelope; msgId: string | undefined; traceparent: string | undefined }[] =
      [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.USERS.name, { seq });
      out.push({
        subject: m.subject,
        envelope: fromBinary(EnvelopeSchema, m.data),
        msgId: m.header?.get("Nats-Msg-Id"),
        traceparent: m.header?.get("traceparent") || undefined,
      });
    }
    return out;
  }

  it("publishes user.registered with the account's id, email and time zone, in the trace of the Register call", async () => {
    const email = uniqueEmail();
    const { user } = await s.users.register({ email, password: "correct horse" });
    await waitFor("the outbox to drain", () => s.app.events.backlog() === 0);

    const mine = (await usersStream()).filter((m) => m.envelope.userId === user?.id);
    expect(mine).toHaveLength(1);
    const [m] = mine;
    expect(m?.subject).toBe("taskmesh.user.registered");
    expect(m?.msgId).toBe(m?.envelope.id);
    // The relay's publish span is the child of the Register handler's SERVER span, and the message
    // carries the publish span's context on to consumers.
    const spans = exporter.getFinishedSpans();
    const publish = spans.find((x) => x.kind === PRODUCER && x.attributes["messaging.message.id"] === m?.envelope.id);
    const handler = spans.find((x) => x.spanContext().spanId === publish?.parentSpanContext?.spanId);
    expect(handler?.kind).toBe(SERVER);
    expect(handler?.name).toBe("grpc.taskmesh.users.v1.UserService/Register");
    expect(publish?.spanContext().traceId).toBe(handler?.spanContext().traceId);
    expect(m?.traceparent).toBe(`00-${publish?.spanContext().traceId}-${publish?.spanContext().spanId}-01`);
    expect(m?.envelope).toMatchObject({ type: "user.registered", userId: user?.id, aggregateId: user?.id });
    expect(m?.envelope.payload).toMatchObject({
      case: "userRegistered",
      value: { userId: user?.id, email, timeZone: "" },
    });
    expect(m?.envelope.occurredAt).toEqual(user?.createTime);
  });

  it("publishes nothing for a refused registration (email taken)", async () => {
    const email = uniqueEmail();
    await s.users.register({ email, password: "correct horse" });
    const refused = await s.users.register({ email: email.toUpperCase(), password: "another one" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((refused as ConnectError).code).toBe(Code.AlreadyExists);
    await waitFor("the outbox to drain", () => s.app.events.backlog() === 0);
    const registered = (await usersStream()).filter(
      (m) => m.envelope.payload.case === "userRegistered" && m.envelope.payload.value.email === email,
    );
    expect(registered).toHaveLength(1);
  });

  it("keeps registering while NATS is unreachable (ready on the database alone) and publishes once it is back", async () => {
    const down = tempDir("users-events-down-");
    // A second nats-server, stopped while the service registers a user.
    const other = await startNats();
    const u = await started(down.path, other.url);
    try {
      await waitFor("NATS connected", () => u.app.events.natsConnected);
      await other.kill("SIGTERM");
      await waitFor("the link to notice", () => !u.app.events.natsConnected);

      const email = uniqueEmail();
      const { user } = await u.users.register({ email, password: "correct horse" });
      expect(user?.email).toBe(email);
      expect(u.app.events.backlog()).toBe(1);
      // Readiness is the database: still SERVING. The "nats" entry says NATS is away.
      // Readiness is re-evaluated every 2 s: it must stay SERVING across a few evaluations.
      for (const until = Date.now() + 2500; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
        expect((await u.health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      }
      await waitFor(
        "the nats health entry to say NOT_SERVING",
        async () =>
          (await u.health.check({ service: NATS_HEALTH_SERVICE })).status ===
          HealthCheckResponse_ServingStatus.NOT_SERVING,
      );

      await other.restart();
      await waitFor("the outbox to drain after NATS returned", () => u.app.events.backlog() === 0);
      expect(u.app.events.relay.published).toBe(1);
      expect((await u.health.check({ service: NATS_HEALTH_SERVICE })).status).toBe(
        HealthCheckResponse_ServingStatus.SERVING,
      );
    } finally {
      await u.stop();
      await other.stop();
      down.remove();
    }
  });
});
