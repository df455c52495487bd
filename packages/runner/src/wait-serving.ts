import { Health, HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { createGrpcClient } from "@taskmesh/platform";

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
    // grpc-js backs off up to minutes between connection attempts by default; a process that is
    // still starting should be seen within a tenth of a second of listening.
    channelOptions: { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 },
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
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
}
