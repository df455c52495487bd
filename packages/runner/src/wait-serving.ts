import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { createGrpcClient } from "@taskmesh/platform";

/** Between health checks. */
const POLL_MS = 25;

export interface WaitServingOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Returns a reason when the process being waited for is gone, so the wait fails at once. */
  gone?: () => string | undefined;
}

/**
 * Polls grpc.health.v1 Check (overall status, service "") at `address` until it answers SERVING.
 * Rejects with the last answer or error when the time is up or the process is gone.
 */
export async function waitServing(address: string, opts: WaitServingOptions): Promise<void> {
  const client = createGrpcClient(Health, {
    address,
    defaultTimeoutMs: 1000,
    retries: false,
    // grpc-js backs off up to minutes between connection attempts by default, and a check made
    // while the channel backs off fails at once without connecting: the backoff, not the poll,
    // decides how soon a process that starts listening is seen. Attempts on 127.0.0.1 cost next to
    // nothing, so try every 25-50 ms (the previous 100-500 ms could see a service up to 0.5 s late).
    channelOptions: { "grpc.initial_reconnect_backoff_ms": 25, "grpc.max_reconnect_backoff_ms": 50 },
  });
  const deadline = Date.now() + opts.timeoutMs;
  let last = "no answer yet";
  try {
    for (;;) {
      const gone = opts.gone?.();
      if (gone) throw new Error(gone);
      try {
        const res = await client.check({ service: "" });
        if (res.status === HealthCheckResponse_ServingStatus.SERVING) return;
        last = `health status ${HealthCheckResponse_ServingStatus[res.status]}`;
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
