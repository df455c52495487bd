import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import type { LoadOptions } from "./args.js";
import { type LoadReport, methodRow, streamSummary } from "./report.js";
import { errorCode, Stats } from "./stats.js";
import { drawMethod, MIX_METHODS, type MixMethod, transportFor, VirtualUser } from "./virtual-user.js";

export interface RunHooks {
  /** Aborting stops sending early (Ctrl-C); the report covers what ran so far. */
  signal?: AbortSignal;
  /** A progress line about every 2 s. Default: none. */
  progress?: (line: string) => void;
  /** A warning (e.g. rate-limited setup). Default: none. */
  warn?: (line: string) => void;
}

/** Register + Login in parallel at most this many at once: logins hash passwords, which is slow. */
const SETUP_CONCURRENCY = 16;
/** How long setup keeps retrying one user's RESOURCE_EXHAUSTED (login rate limit) and UNAVAILABLE. */
const SETUP_RETRY_MS = { limited: 60_000, unavailable: 5000 };
/** After Ctrl-C, how long calls in flight get before they are abandoned. */
const INTERRUPT_GRACE_MS = 2000;

/**
 * Registers and logs in every virtual user, opens their notification streams, then sends at
 * `rate` calls per second over all users for `durationMs`, open loop: call i is due at
 * start + i/rate whatever the earlier calls are doing, and its latency is counted from that
 * moment, so a slow system shows up as latency rather than as a lower send rate (coordinated
 * omission). Calls go to the users in turn; each draws its method from the mix.
 */
export async function runLoad(o: LoadOptions, hooks: RunHooks = {}): Promise<LoadReport> {
  const stop = hooks.signal ?? new AbortController().signal;
  const stats = new Stats();
  // Aborted only when the run gives up on calls still in flight (and to close the streams).
  const calls = new AbortController();
  const streams = new AbortController();
  // Every call in flight and every stream listens on these: hundreds of listeners are expected.
  setMaxListeners(0, calls.signal, streams.signal, stop);
  const users = Array.from({ length: o.users }, (_, i) => {
    // One transport (HTTP/2 session or HTTP/1.1 agent) per user, as separate clients would have.
    return new VirtualUser(i + 1, transportFor(o.protocol, o.gateway), o.timeoutMs);
  });

  const setupStart = performance.now();
  const ready = await setUp(users, stats, stop, hooks.warn);
  const setupMs = performance.now() - setupStart;
  const watching = ready.map((u) => u.watch(stats, streams.signal));

  const intervalMs = 1000 / o.rate;
  const start = performance.now();
  let next = 0;
  let abandoned = 0;
  const inFlight = new Set<Promise<void>>();

  const send = (i: number) => {
    const scheduled = start + i * intervalMs;
    const user = ready[i % ready.length] as VirtualUser;
    if (stats.inFlight >= o.maxInFlight) {
      stats.dropped++;
      return;
    }
    stats.sent++;
    stats.inFlight++;
    let method: MixMethod = drawMethod();
    const p = user
      .call(method, calls.signal, (m) => {
        method = m;
      })
      .then(
        () => {
          stats.ok++;
          stats.method(method).record(performance.now() - scheduled);
        },
        (err) => {
          if (calls.signal.aborted && ConnectError.from(err).code === Code.Canceled) {
            abandoned++;
            return;
          }
          stats.failed++;
          stats.method(method).record(performance.now() - scheduled, errorCode(err), ConnectError.from(err).rawMessage);
        },
      )
      .finally(() => {
        stats.inFlight--;
        inFlight.delete(p);
      });
    inFlight.add(p);
  };

  let lastSent = 0;
  let lastAt = start;
  const progress = setInterval(() => {
    const now = performance.now();
    const rate = ((stats.sent - lastSent) * 1000) / (now - lastAt);
    lastSent = stats.sent;
    lastAt = now;
    hooks.progress?.(
      `${((now - start) / 1000).toFixed(1)}s sent ${stats.sent} ok ${stats.ok} errors ${stats.failed} ` +
        `rate ${rate.toFixed(1)}/s in-flight ${stats.inFlight} streams ${stats.streams.open} messages ${stats.streams.messages}` +
        (stats.dropped > 0 ? ` dropped ${stats.dropped}` : ""),
    );
  }, 2000);

  // The schedule: a timer wakes about every ms (or sooner than the next due call) and sends every
  // call whose time has come, so a late wake-up sends a burst instead of silently lowering the rate.
  const total = ready.length === 0 ? 0 : Math.ceil((o.durationMs / 1000) * o.rate);
  while (next < total && !stop.aborted) {
    const now = performance.now();
    while (next < total && start + next * intervalMs <= now) send(next++);
    if (next >= total) break;
    const wait = Math.max(1, Math.min(start + next * intervalMs - performance.now(), 50));
    await sleep(wait, undefined, { signal: stop }).catch(() => undefined);
  }
  const endedAt = stop.aborted ? performance.now() : start + o.durationMs;

  // Let calls in flight finish within their deadline (a short grace after Ctrl-C), then give up on them.
  const grace = stop.aborted ? INTERRUPT_GRACE_MS : o.timeoutMs + 1000;
  await Promise.race([Promise.allSettled([...inFlight]), sleep(grace)]);
  calls.abort();
  await Promise.allSettled([...inFlight]);
  clearInterval(progress);
  const streamsAtEnd = streamSummary(stats);
  streams.abort();
  await Promise.allSettled(watching);

  const elapsedMs = Math.max(1, endedAt - start);
  const rows = [
    ...["Register", "Login"].map((m) => methodRow(m, "setup", stats.method(m), setupMs)),
    ...MIX_METHODS.map((m) => methodRow(m, "mix", stats.method(m), elapsedMs)),
  ];
  return {
    gateway: o.gateway,
    protocol: o.protocol,
    users: o.users,
    usersReady: ready.length,
    targetRate: o.rate,
    durationMs: o.durationMs,
    elapsedMs: Math.round(elapsedMs),
    setupMs: Math.round(setupMs),
    interrupted: stop.aborted,
    sent: stats.sent,
    ok: stats.ok,
    errors: stats.failed,
    dropped: stats.dropped,
    abandoned,
    achievedRate: Math.round((stats.sent / elapsedMs) * 100_000) / 100,
    methods: rows,
    streams: streamsAtEnd,
  };
}

/** Registers and logs in each user (a few at a time); resolves the users that made it. */
async function setUp(
  users: VirtualUser[],
  stats: Stats,
  stop: AbortSignal,
  warn: ((line: string) => void) | undefined,
): Promise<VirtualUser[]> {
  const ready: VirtualUser[] = [];
  let warned = false;
  const step = async (name: "Register" | "Login", fn: () => Promise<void>) => {
    const t = Date.now();
    let backoffMs = 500;
    for (;;) {
      const t0 = performance.now();
      try {
        await fn();
        stats.method(name).record(performance.now() - t0);
        return;
      } catch (err) {
        const code = errorCode(err);
        stats.method(name).record(performance.now() - t0, code, ConnectError.from(err).rawMessage);
        const c = ConnectError.from(err).code;
        const budget =
          c === Code.ResourceExhausted
            ? SETUP_RETRY_MS.limited
            : c === Code.Unavailable
              ? SETUP_RETRY_MS.unavailable
              : 0;
        if (stop.aborted || Date.now() + backoffMs > t + budget) throw err;
        if (c === Code.ResourceExhausted && !warned) {
          warned = true;
          warn?.(
            "setup is rate-limited (RESOURCE_EXHAUSTED): retrying; start the gateway with LOGIN_RATE_LIMIT_PER_MINUTE=0 for a load run (see README)",
          );
        }
        await sleep(backoffMs * (0.5 + Math.random()), undefined, { signal: stop }).catch(() => undefined);
        backoffMs = Math.min(backoffMs * 2, 8000);
      }
    }
  };
  let i = 0;
  const worker = async () => {
    while (i < users.length && !stop.aborted) {
      const u = users[i++] as VirtualUser;
      try {
        await step("Register", () => u.register(stop));
        await step("Login", () => u.login(stop));
        ready.push(u);
      } catch (err) {
        warn?.(`user ${u.index} not set up: ${errorCode(err)} ${ConnectError.from(err).rawMessage}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SETUP_CONCURRENCY, users.length) }, worker));
  return ready.sort((a, b) => a.index - b.index);
}
