import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "@taskmesh/gen/grpc/health/v1/health_pb";

/** Between health checks. */
const POLL_MS = 25;
/** Deadline of one check. */
const CHECK_TIMEOUT_MS = 1000;

export interface WaitServingOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Returns a reason when the process being waited for is gone, so the wait fails at once. */
  gone?: () => string | undefined;
}

/**
 * Polls grpc.health.v1 Check (overall status, service "") at `address` until it answers SERVING.
 * Rejects with the last answer or error when the time is up or the process is gone.
 *
 * A bare grpc-js client, not the platform's createGrpcClient: importing the platform's index
 * (telemetry, resilience, connect, nats…) took the runner ~0.5 s of CPU before it could spawn
 * the first service, on the critical path of `npm start`.
 */
export async function waitServing(address: string, opts: WaitServingOptions): Promise<void> {
  const client = new Client(address, credentials.createInsecure(), {
    // grpc-js backs off up to minutes between connection attempts by default, and a check made
    // while the channel backs off fails at once without connecting: the backoff, not the poll,
    // decides how soon a process that starts listening is seen. Attempts on 127.0.0.1 cost next to
    // nothing, so try every 25-50 ms (the previous 100-500 ms could see a service up to 0.5 s late).
    "grpc.initial_reconnect_backoff_ms": 25,
    "grpc.max_reconnect_backoff_ms": 50,
  });
  const deadline = Date.now() + opts.timeoutMs;
  let last = "no answer yet";
  try {
    for (;;) {
      const gone = opts.gone?.();
      if (gone) throw new Error(gone);
      try {
        const status = await check(client);
        if (status === HealthCheckResponse_ServingStatus.SERVING) return;
        last = `health status ${HealthCheckResponse_ServingStatus[status]}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) throw new Error(`not SERVING after ${opts.timeoutMs} ms (last: ${last})`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    client.close();
  }
}

const CHECK_PATH = `/${Health.typeName}/${Health.method.check.name}`;
const request = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" }));

/** One Check of the overall status. */
function check(client: Client): Promise<HealthCheckResponse_ServingStatus> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      CHECK_PATH,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
      request,
      { deadline: Date.now() + CHECK_TIMEOUT_MS },
      (err: ServiceError | null, res) => (err || !res ? reject(err ?? new Error("no response")) : resolve(res.status)),
    );
  });
}
