import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { LIVENESS_SERVICE } from "../rpc/grpc-server.js";

export interface EdgeHealthOptions {
  /** True until shutdown begins; "" and "liveness" report it. */
  serving: () => boolean;
  /**
   * Readiness of each public service by its Protobuf name, e.g. asked from the backend that owns
   * it. A check that throws counts as NOT_SERVING.
   */
  services: ReadonlyMap<string, (signal: AbortSignal) => Promise<boolean>>;
}

/**
 * grpc.health.v1.Health at the edge: Check and List. "" and "liveness" are the edge process
 * itself (what probes and `npm start` wait for); a public service's name reports whether its
 * backend is ready; any other name is NOT_FOUND, as the health protocol asks.
 * Watch answers UNIMPLEMENTED, which the protocol tells clients to treat as "not supported,
 * do not retry".
 */
export function addHealth(router: ConnectRouter, opts: EdgeHealthOptions): void {
  const check = async (service: string, signal: AbortSignal): Promise<Status> => {
    if (service === "" || service === LIVENESS_SERVICE) return opts.serving() ? Status.SERVING : Status.NOT_SERVING;
    const ready = opts.services.get(service);
    if (!ready) throw new ConnectError(`unknown service ${service}`, Code.NotFound);
    if (!opts.serving()) return Status.NOT_SERVING;
    return (await ready(signal).catch(() => false)) ? Status.SERVING : Status.NOT_SERVING;
  };
  router.service(Health, {
    check: async (req, ctx) => ({ status: await check(req.service, ctx.signal) }),
    list: async (_req, ctx) => {
      const names = ["", LIVENESS_SERVICE, ...opts.services.keys()];
      const statuses = await Promise.all(names.map((n) => check(n, ctx.signal)));
      return { statuses: Object.fromEntries(names.map((n, i) => [n, { status: statuses[i] }])) };
    },
    // biome-ignore lint/correctness/useYield: Watch is deliberately not supported at the edge.
    watch: async function* () {
      throw new ConnectError("Watch is not supported at the edge; poll Check", Code.Unimplemented);
    },
  });
}
