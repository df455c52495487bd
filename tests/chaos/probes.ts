// How the chaos runner sees a killed process come back: its health SERVING again (what its
// consumers and the runner wait for), the first successful client call through the gateway that
// needs it, or for nats-server the moment what the producer queued in its outbox meanwhile is in
// JetStream. Each probe polls every 100 ms from the moment the process is dead and resolves with
// the instant it first succeeded, or undefined when `signal` aborts first.
import { createConnection } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createGrpcClient } from "@taskmesh/platform";
import Database from "better-sqlite3";

const POLL_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function poll(signal: AbortSignal, attempt: () => Promise<boolean>): Promise<number | undefined> {
  while (!signal.aborted) {
    try {
      if (await attempt()) return Date.now();
    } catch {
      // not yet
    }
    await sleep(POLL_MS);
  }
  return undefined;
}

/** grpc.health.v1 Check "" at `address` (host:port) answers SERVING. */
export function probeServing(address: string, signal: AbortSignal): Promise<number | undefined> {
  return poll(signal, async () => {
    // A fresh channel each time: a grpc-js channel that failed to connect waits out its reconnect
    // backoff, which would blur the moment the process is back.
    const client = createGrpcClient(Health, { address, defaultTimeoutMs: 1000, retries: false });
    try {
      return (await client.check({ service: "" })).status === HealthCheckResponse_ServingStatus.SERVING;
    } finally {
      client.close();
    }
  });
}

/** nats-server accepts TCP connections on `port` again. */
export function probeNatsListening(port: number, signal: AbortSignal): Promise<number | undefined> {
  return poll(
    signal,
    () =>
      new Promise<boolean>((resolve) => {
        const s = createConnection({ host: "127.0.0.1", port });
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      }),
  );
}

/** The highest outbox sequence in `dbFile` (a service's SQLite file, read-only). */
export function outboxHead(dbFile: string): number {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return Number(db.prepare("SELECT coalesce(max(seq), 0) FROM outbox").pluck().get());
  } finally {
    db.close();
  }
}

/**
 * Every outbox row of `dbFile` up to `uptoSeq` is published (PubAck from JetStream, then marked):
 * what the producer wrote while nats-server was down has reached the stream.
 */
export function probeOutboxDrained(dbFile: string, uptoSeq: number, signal: AbortSignal): Promise<number | undefined> {
  return poll(signal, async () => {
    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      const n = db.prepare("SELECT count(*) FROM outbox WHERE seq <= ? AND published_at IS NULL").pluck().get(uptoSeq);
      return Number(n) === 0;
    } finally {
      db.close();
    }
  });
}

/** A call through the gateway that needs `service`, as a signed-up user, succeeds. */
export async function probeCall(
  gateway: string,
  token: string,
  service: string,
  signal: AbortSignal,
): Promise<number | undefined> {
  const transport = createGrpcTransport({ baseUrl: gateway });
  const call = { headers: { authorization: `Bearer ${token}` }, timeoutMs: 2000 };
  const calls: Record<string, () => Promise<unknown>> = {
    gateway: () => createClient(TaskService, transport).listTasks({ pageSize: 1 }, call),
    tasks: () => createClient(TaskService, transport).listTasks({ pageSize: 1 }, call),
    users: () => createClient(UserService, transport).getMe({}, call),
    analytics: () => createClient(AnalyticsService, transport).getStats({}, call),
    notifications: () => createClient(NotificationService, transport).listNotifications({ pageSize: 1 }, call),
  };
  const fn = calls[service];
  if (!fn) throw new Error(`no client call needs ${service} alone`);
  return await poll(signal, async () => {
    try {
      await fn();
      return true;
    } catch (err) {
      // Anything but UNAVAILABLE/DEADLINE_EXCEEDED means the service answered: still a failure here.
      const code = ConnectError.from(err).code;
      if (code !== Code.Unavailable && code !== Code.DeadlineExceeded) throw err;
      return false;
    }
  });
}

/** Services a client call through the gateway depends on, so their recovery is seen by one. */
export const CLIENT_FACING = ["gateway", "tasks", "users", "analytics", "notifications"] as const;

/**
 * The outbox reconciler of `dbFile` republished every one of `eventIds` (JetStream had lost them):
 * each row's recorded stream sequence is now past `afterSeq`, the stream's last one when they
 * were deleted.
 */
export function probeRepublished(
  dbFile: string,
  eventIds: readonly string[],
  afterSeq: number,
  signal: AbortSignal,
): Promise<number | undefined> {
  return poll(signal, async () => {
    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      const n = db
        .prepare(
          `SELECT count(*) FROM outbox WHERE stream_seq > ? AND event_id IN (${eventIds.map(() => "?").join(",")})`,
        )
        .pluck()
        .get(afterSeq, ...eventIds);
      return Number(n) === eventIds.length;
    } finally {
      db.close();
    }
  });
}
