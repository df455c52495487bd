import { Code, ConnectError } from "@connectrpc/connect";
import {
  BrokenCircuitError,
  type BulkheadPolicy,
  BulkheadRejectedError,
  bulkhead,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  TaskCancelledError,
  type TimeoutPolicy,
  TimeoutStrategy,
  timeout,
} from "cockatiel";
import type { Logger } from "../log/logger.js";
import { platformInstruments } from "../telemetry/metrics.js";

export interface DependencyPolicyOptions {
  logger: Logger;
  /** Calls to this dependency in flight at once (bulkhead). Default 64. */
  maxConcurrent?: number;
  /** Calls waiting for a slot; beyond that a call is refused with RESOURCE_EXHAUSTED at once. Default 32. */
  maxQueued?: number;
  /** Consecutive failures (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN) that open the breaker. Default 5. */
  breakerFailures?: number;
  /** How long an open breaker refuses calls before it lets one trial call through (half-open). Default 5000 ms. */
  halfOpenAfterMs?: number;
  /**
   * Server streams open to this dependency at once; beyond that a new stream is refused with
   * RESOURCE_EXHAUSTED at once (no queue). Separate from `maxConcurrent`: see `openStream`. Default 1000.
   */
  maxStreams?: number;
}

/** A stream admitted by `openStream`: report what the dependency did, and release the slot when it ends. */
export interface StreamLease {
  /** The dependency answered (a message, a clean end, a business error): proof that it is up. Once per lease. */
  answered(): void;
  /**
   * The stream ended with `err`. Counts against the dependency only for UNAVAILABLE, INTERNAL or
   * UNKNOWN before it answered, and never when `callerGone` (the caller cancelled, or the gateway drains).
   */
  failed(err: ConnectError, callerGone: boolean): void;
  /** Frees the stream slot. Idempotent. */
  release(): void;
}

export interface DependencyCallOptions {
  /** The dependency's own time budget for this call; missing it counts as a failure of the dependency. */
  timeoutMs: number;
  /**
   * What is left of the caller's deadline, if it has one. The call's budget is capped by it; a
   * deadline missed because the *caller* was short of time does not count against the dependency
   * (otherwise one client sending 1 ms deadlines could open the breaker for everyone).
   */
  callerRemainingMs?: number | undefined;
  /** The caller's cancellation (e.g. the inbound call's signal). A cancelled call never counts. */
  signal?: AbortSignal | undefined;
  /**
   * Whether a missed deadline counts as a failure of the dependency. False for a caller whose own
   * budget is tighter than the dependency is expected to meet (a dashboard part): a slow part then
   * goes missing from that answer without opening the breaker for everyone else's calls, while
   * UNAVAILABLE and the like still count. Default true.
   */
  deadlineCounts?: boolean | undefined;
}

export type BreakerState = "closed" | "open" | "half-open" | "isolated";
const BREAKER_STATE_VALUES: Record<BreakerState, number> = { closed: 0, "half-open": 1, open: 2, isolated: 3 };

/**
 * Codes that say the dependency itself is in trouble. Everything else a dependency answers with
 * (NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED, ...) is a business answer: proof that it is up,
 * so it counts as a success for the breaker.
 */
const FAILURE_CODES: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Internal,
  Code.Unknown,
]);

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  [CircuitState.Isolated]: "isolated",
};

/** A business answer travels through the breaker as a value, so the breaker sees the dependency as healthy. */
type Outcome<T> = { ok: true; value: T } | { ok: false; error: ConnectError };

/**
 * Codes that count against a dependency when a *stream* ends with them. DEADLINE_EXCEEDED is left
 * out: a stream has no deadline of ours, only the caller's.
 */
const STREAM_FAILURE_CODES: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Internal, Code.Unknown]);

/** Raised when a call's own signal fires while it still waits (bulkhead queue, half-open trial). */
class GaveUp extends Error {}

/**
 * Resilience for calls to one dependency (a backend service), built from cockatiel policies and
 * shared by every route that calls it, so one slow backend cannot take the others down with it:
 *
 *   timeout (cooperative) → circuit breaker → bulkhead → the call
 *
 * - **Timeout**: each call gets min(its own budget, the caller's remaining deadline); the
 *   AbortSignal goes into the grpc-js call, which is cancelled when time is up (cooperative: the
 *   call really stops, the backend sees the cancellation). Waiting for a bulkhead slot or for a
 *   half-open trial ends on the same signal.
 * - **Circuit breaker** (ConsecutiveBreaker): opens after `breakerFailures` consecutive failures
 *   (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN — never business codes, which reset the
 *   count); while open, calls fail at once with UNAVAILABLE without reaching the dependency; after
 *   `halfOpenAfterMs` one trial call decides between closing and opening again. State changes
 *   are logged; `state` is what the gateway's health reports as `dependency.<name>`.
 * - **Bulkhead**: at most `maxConcurrent` calls in flight and `maxQueued` waiting; more are refused
 *   with RESOURCE_EXHAUSTED at once (shedding load instead of piling up sockets and memory).
 *   Inside the breaker, so an open breaker does not hold slots; a refusal is our own load
 *   shedding, not the dependency's failure, so it does not count.
 */
export class DependencyPolicy {
  readonly name: string;
  readonly #logger: Logger;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #bulkhead: BulkheadPolicy;
  /** One cockatiel timeout per configured budget; a budget cut by the caller's deadline gets its own. */
  readonly #timeouts = new Map<number, TimeoutPolicy>();
  /** Errors that count against the dependency: the breaker's filter. */
  readonly #failures = new WeakSet<object>();
  readonly #halfOpenAfterMs: number;
  readonly #maxStreams: number;
  #streams = 0;
  /** When the breaker last opened (ms since epoch). */
  #openedAt = 0;
  readonly #stopMetrics: () => void;

  constructor(name: string, opts: DependencyPolicyOptions) {
    this.name = name;
    this.#logger = opts.logger;
    this.#halfOpenAfterMs = opts.halfOpenAfterMs ?? 5000;
    this.#maxStreams = opts.maxStreams ?? 1000;
    this.#breaker = circuitBreaker(
      handleWhen((e) => this.#failures.has(e)),
      {
        halfOpenAfter: this.#halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(opts.breakerFailures ?? 5),
      },
    );
    this.#bulkhead = bulkhead(opts.maxConcurrent ?? 64, opts.maxQueued ?? 32);
    // taskmesh_breaker_state{dependency}, read at scrape time.
    const gauge = platformInstruments().breakerState;
    const observe = (r: { observe(v: number, a: { dependency: string }): void }) =>
      r.observe(BREAKER_STATE_VALUES[this.state], { dependency: name });
    gauge.addCallback(observe);
    this.#stopMetrics = () => gauge.removeCallback(observe);
    this.#breaker.onStateChange((s) => {
      const state = STATE_NAMES[s];
      if (state === "open") {
        this.#openedAt = Date.now();
        const failure = this.#breaker.lastFailure;
        const lastFailure = failure && "error" in failure ? String((failure.error as Error).message) : undefined;
        this.#logger.warn({ dependency: name, breaker: state, lastFailure }, `circuit breaker for ${name} opened`);
      } else this.#logger.info({ dependency: name, breaker: state }, `circuit breaker for ${name} is ${state}`);
    });
  }

  /** Stops reporting this policy's breaker state to metrics (the policy otherwise lives as long as the process). */
  dispose(): void {
    this.#stopMetrics();
  }

  /** The breaker's state. */
  get state(): BreakerState {
    return STATE_NAMES[this.#breaker.state];
  }

  /** False while the breaker is open (calls are refused without reaching the dependency). */
  get available(): boolean {
    const s = this.#breaker.state;
    return s === CircuitState.Closed || s === CircuitState.HalfOpen;
  }

  /** Server streams open to this dependency now. */
  get openStreams(): number {
    return this.#streams;
  }

  /**
   * Admits a server stream, or throws: UNAVAILABLE while the breaker is open (before its half-open
   * delay has passed; after it, the stream goes through and its outcome is the trial),
   * RESOURCE_EXHAUSTED when `maxStreams` streams are already open. The caller holds the returned
   * lease while the stream is open and reports its outcome to it.
   *
   * Why not `execute`: a stream is long-lived and has no budget of ours (a watch may idle for
   * hours), so neither the timeout nor a slot of the unary bulkhead fits it. Held in that bulkhead,
   * `maxConcurrent` idle watchers would starve every unary call to the same backend (a dashboard,
   * a MarkRead). Streams get their own bulkhead (a count of open streams, no queue: a stream
   * queued without a deadline would just hang) and share the breaker: a backend that refuses
   * streams opens it for unary calls too, and an open breaker refuses streams without a backend hop.
   */
  openStream(): StreamLease {
    const s = this.#breaker.state;
    if (s === CircuitState.Isolated || (s === CircuitState.Open && Date.now() - this.#openedAt < this.#halfOpenAfterMs))
      throw new ConnectError(`${this.name} is unavailable (circuit open), retry later`, Code.Unavailable);
    if (this.#streams >= this.#maxStreams)
      throw new ConnectError(`${this.name} has too many open streams, retry later`, Code.ResourceExhausted);
    this.#streams++;
    let released = false;
    let reported = false;
    const report = (error?: ConnectError) => {
      if (reported) return;
      reported = true;
      // Through the breaker itself, so cockatiel's own counting applies: closed → counted; open past
      // its delay → this is the half-open trial; open before it → ignored (BrokenCircuitError).
      if (error) this.#failures.add(error);
      this.#breaker
        .execute(() => {
          if (error) throw error;
        })
        .catch(() => undefined);
    };
    return {
      answered: () => report(),
      failed: (err, callerGone) => {
        if (callerGone) {
          reported = true;
          return;
        }
        if (STREAM_FAILURE_CODES.has(err.code)) report(err);
        else report();
      },
      release: () => {
        if (released) return;
        released = true;
        this.#streams--;
      },
    };
  }

  /**
   * Runs `run` under the timeout, breaker and bulkhead. `run` must pass `signal` to the call it
   * makes and use `budgetMs` as its deadline. Errors come back as ConnectError: the dependency's
   * own code and message unchanged, or DEADLINE_EXCEEDED (budget used up), UNAVAILABLE (breaker
   * open), RESOURCE_EXHAUSTED (bulkhead full), CANCELLED (the caller went away).
   */
  async execute<T>(run: (signal: AbortSignal, budgetMs: number) => Promise<T>, o: DependencyCallOptions): Promise<T> {
    const budget = o.callerRemainingMs === undefined ? o.timeoutMs : Math.min(o.timeoutMs, o.callerRemainingMs);
    if (budget <= 0) throw new ConnectError("deadline exceeded before the call was made", Code.DeadlineExceeded);
    const callerCapped = budget < o.timeoutMs;
    let outcome: Outcome<T>;
    try {
      outcome = await this.#timeout(budget, !callerCapped).execute(
        (_ctx, signal) =>
          untilAborted(
            this.#breaker.execute(
              () => this.#admit(run, signal, budget, callerCapped || o.deadlineCounts === false, o.signal),
              signal,
            ),
            signal,
          ),
        o.signal,
      );
    } catch (e) {
      throw this.#toConnectError(e, budget, o.signal);
    }
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  /** Inside the breaker: through the bulkhead to the call. */
  async #admit<T>(
    run: (signal: AbortSignal, budgetMs: number) => Promise<T>,
    signal: AbortSignal,
    budget: number,
    callerCapped: boolean,
    callerSignal: AbortSignal | undefined,
  ): Promise<Outcome<T>> {
    try {
      return await this.#bulkhead.execute(() => this.#attempt(run, signal, budget, callerCapped, callerSignal), signal);
    } catch (e) {
      // A half-open trial that ends without an answer (cancelled, refused by the bulkhead) must
      // not close the breaker, which cockatiel does on any error its filter does not handle.
      if (this.#breaker.state === CircuitState.HalfOpen && typeof e === "object" && e !== null) this.#failures.add(e);
      throw e;
    }
  }

  async #attempt<T>(
    run: (signal: AbortSignal, budgetMs: number) => Promise<T>,
    signal: AbortSignal,
    budget: number,
    callerCapped: boolean,
    callerSignal: AbortSignal | undefined,
  ): Promise<Outcome<T>> {
    // Time ran out while queued: never start a call (grpc-js would not see an earlier abort).
    if (signal.aborted) throw new GaveUp();
    try {
      return { ok: true, value: await run(signal, budget) };
    } catch (e) {
      let err: ConnectError;
      let counts: boolean;
      if (callerSignal?.aborted) {
        err = new ConnectError("cancelled by the caller", Code.Canceled);
        counts = false;
      } else if (signal.aborted) {
        // Our own timer cancelled the call (grpc-js reports CANCELLED): the dependency was too slow,
        // unless the budget was cut short by the caller's deadline.
        err = this.#deadlineError(budget);
        counts = !callerCapped;
      } else {
        err = ConnectError.from(e);
        if (!FAILURE_CODES.has(err.code)) return { ok: false, error: err };
        // grpc-js's own deadline (the same budget) may fire just before our timer: one message either way.
        if (err.code === Code.DeadlineExceeded && err.rawMessage.startsWith("Deadline exceeded after"))
          err = this.#deadlineError(budget);
        counts = !(err.code === Code.DeadlineExceeded && callerCapped);
      }
      if (counts) this.#failures.add(err);
      throw err;
    }
  }

  #timeout(ms: number, cacheable: boolean): TimeoutPolicy {
    let policy = this.#timeouts.get(ms);
    if (!policy) {
      // abortOnReturn false: a call that has returned has nothing left to cancel, and aborting its
      // signal anyway (cockatiel's default) builds a DOMException and runs every listener per call,
      // ~2 % of the gateway's CPU in a profile of forwarded calls.
      policy = timeout(ms, { strategy: TimeoutStrategy.Cooperative, abortOnReturn: false });
      // The configured budgets are few (forwarding, dashboard part); budgets cut by a caller's
      // deadline differ per call and get a throwaway policy.
      if (cacheable && this.#timeouts.size < 8) this.#timeouts.set(ms, policy);
    }
    return policy;
  }

  #deadlineError(budget: number): ConnectError {
    return new ConnectError(`${this.name} did not answer within ${budget} ms`, Code.DeadlineExceeded);
  }

  #toConnectError(e: unknown, budget: number, callerSignal: AbortSignal | undefined): ConnectError {
    if (e instanceof ConnectError) return e;
    // instanceof, not cockatiel's isTaskCancelledError(), which (3.2.1) tests for the bulkhead's marker.
    if (e instanceof BulkheadRejectedError)
      return new ConnectError(
        `${this.name} is overloaded (too many calls in flight), retry later`,
        Code.ResourceExhausted,
      );
    if (e instanceof GaveUp || e instanceof TaskCancelledError) {
      return callerSignal?.aborted
        ? new ConnectError("cancelled by the caller", Code.Canceled)
        : this.#deadlineError(budget);
    }
    if (e instanceof BrokenCircuitError)
      return new ConnectError(`${this.name} is unavailable (circuit open), retry later`, Code.Unavailable);
    return ConnectError.from(e);
  }
}

/** `p`, or a GaveUp rejection as soon as `signal` aborts (what p settles to later is then ignored). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new GaveUp());
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
