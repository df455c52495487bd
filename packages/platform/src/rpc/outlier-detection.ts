import * as grpc from "@grpc/grpc-js";

/**
 * Client-side outlier detection over several replicas of a service (`npm start -- --replicas tasks=2`),
 * with grpc-js's own `outlier_detection` load-balancing policy wrapping `round_robin`.
 *
 * grpc-js counts EVERY non-OK status as a failure of the replica that answered
 * (load-balancer-outlier-detection.js, OutlierDetectionPicker: `statusCode === Status.OK ? addSuccess : addFailure`),
 * and nothing in its config changes that. A replica that correctly answers NOT_FOUND or
 * INVALID_ARGUMENT to a burst of bad requests would then be ejected although it is healthy. So the
 * channel's top policy is a thin one of ours, `taskmesh_replica_failures`, which only rewrites the
 * status the child's picker hears at the end of a call: codes that say something about the replica
 * (REPLICA_FAILURE_CODES) go through, every other code — an answer the replica gave as designed —
 * is reported as OK. Routing, counting and ejection stay grpc-js's. This follows Envoy, which counts
 * only 5xx (for gRPC: UNAVAILABLE→503, DEADLINE_EXCEEDED→504, INTERNAL/UNKNOWN/DATA_LOSS→500) in
 * its outlier detection, so the app and the mesh (TASKMESH_MESH=istio) eject for the same reasons.
 *
 * Ejection uses grpc-js's failure-percentage algorithm: at the end of every interval a replica
 * that took at least `minRequests` calls in it, more than `failurePercent` % of which failed, is
 * ejected for baseEjection × (times ejected), capped by maxEjection; at most `maxEjectionPercent`
 * % of the replicas are out at once. The success-rate algorithm is not used: it compares each
 * replica to the mean minus `stdev_factor` standard deviations, and with two replicas the worse one
 * sits exactly one deviation below the mean, so it ejects either on every difference or never.
 * With one endpoint nothing is ever ejected (minimum_hosts = 2).
 */
export interface OutlierDetectionOptions {
  /** How often ejection is decided, over the calls of the interval just ended. Default 10000 ms (the mesh's). */
  intervalMs?: number;
  /** How long a first ejection lasts; the n-th lasts n times as long. Default 30000 ms (the mesh's). */
  baseEjectionMs?: number;
  /** Cap of an ejection's duration. Default 300000 ms. */
  maxEjectionMs?: number;
  /** Most replicas out at once, in percent. Default 50 (one of two; the mesh's). */
  maxEjectionPercent?: number;
  /** A replica is ejected when more than this percentage of its calls in an interval failed. Default 50. */
  failurePercent?: number;
  /** ...and only if it took at least this many calls in that interval. Default 10. */
  minRequests?: number;
}

/** Statuses that count against the replica that returned them; every other code counts as a success. */
export const REPLICA_FAILURE_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.DATA_LOSS,
]);

const POLICY = "taskmesh_replica_failures";

const duration = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 });

/**
 * The `loadBalancingConfig` of a channel: round_robin, inside grpc-js outlier_detection, inside
 * the status filter above; or plain round_robin when `opts` is false.
 */
export function loadBalancingConfig(opts: OutlierDetectionOptions | false): object[] {
  if (opts === false || !registerPolicy()) return [{ round_robin: {} }];
  return [
    {
      [POLICY]: {
        child_policy: [
          {
            // grpc-js reads these durations as {seconds, nanos} objects, not "10s" strings.
            outlier_detection: {
              interval: duration(opts.intervalMs ?? 10_000),
              base_ejection_time: duration(opts.baseEjectionMs ?? 30_000),
              max_ejection_time: duration(opts.maxEjectionMs ?? 300_000),
              max_ejection_percent: opts.maxEjectionPercent ?? 50,
              failure_percentage_ejection: {
                threshold: opts.failurePercent ?? 50,
                enforcement_percentage: 100,
                minimum_hosts: 2,
                request_volume: opts.minRequests ?? 10,
              },
              child_policy: [{ round_robin: {} }],
            },
          },
        ],
      },
    },
  ];
}

class ReplicaFailuresConfig implements grpc.experimental.TypedLoadBalancingConfig {
  constructor(readonly child: grpc.experimental.TypedLoadBalancingConfig) {}
  getLoadBalancerName() {
    return POLICY;
  }
  toJsonObject() {
    return { [POLICY]: { child_policy: [this.child.toJsonObject()] } };
  }
  static createFromJson(obj: { child_policy?: unknown }) {
    if (!Array.isArray(obj.child_policy)) throw new Error(`${POLICY} config: child_policy must be an array`);
    const child = grpc.experimental.selectLbConfigFromList(obj.child_policy);
    if (!child) throw new Error(`${POLICY} config: no known policy in child_policy`);
    return new ReplicaFailuresConfig(child);
  }
}

class ReplicaFailuresPicker implements grpc.experimental.Picker {
  constructor(readonly inner: grpc.experimental.Picker) {}
  pick(args: grpc.experimental.PickArgs): grpc.experimental.PickResult {
    const result = this.inner.pick(args);
    const onCallEnded = result.onCallEnded;
    if (result.pickResultType !== grpc.experimental.PickResultType.COMPLETE || !onCallEnded) return result;
    return {
      ...result,
      onCallEnded: (code, details, metadata) =>
        onCallEnded(REPLICA_FAILURE_CODES.has(code) ? code : grpc.status.OK, details, metadata),
    };
  }
}

class ReplicaFailuresBalancer implements grpc.experimental.LoadBalancer {
  readonly #child: grpc.experimental.ChildLoadBalancerHandler;
  constructor(helper: grpc.experimental.ChannelControlHelper) {
    this.#child = new grpc.experimental.ChildLoadBalancerHandler(
      grpc.experimental.createChildChannelControlHelper(helper, {
        updateState: (state, picker, message) => helper.updateState(state, new ReplicaFailuresPicker(picker), message),
      }),
    );
  }
  updateAddressList(
    endpoints: Parameters<grpc.experimental.LoadBalancer["updateAddressList"]>[0],
    config: grpc.experimental.TypedLoadBalancingConfig,
    options: grpc.ChannelOptions,
    note: string,
  ): boolean {
    if (!(config instanceof ReplicaFailuresConfig)) return false;
    return this.#child.updateAddressList(endpoints, config.child, options, note);
  }
  exitIdle() {
    this.#child.exitIdle();
  }
  resetBackoff() {
    this.#child.resetBackoff();
  }
  destroy() {
    this.#child.destroy();
  }
  getTypeName() {
    return POLICY;
  }
}

/** Registers our policy once; false when grpc-js's outlier_detection is switched off. */
function registerPolicy(): boolean {
  if (grpc.experimental.isLoadBalancerNameRegistered(POLICY)) return true;
  // grpc-js registers outlier_detection unless GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION=false
  // (default on); without it, channels fall back to plain round_robin.
  if (!grpc.experimental.isLoadBalancerNameRegistered("outlier_detection")) return false;
  grpc.experimental.registerLoadBalancerType(POLICY, ReplicaFailuresBalancer, ReplicaFailuresConfig);
  return true;
}
