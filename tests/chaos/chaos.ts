// The chaos run: the whole system as `npm start` runs it (real processes, real nats-server, SQLite
// files in a temporary data dir, free ports), a steady mixed load through the gateway, and each
// process SIGKILLed and restarted in turn while the load goes on. Per fault it measures the client
// calls that finally failed (and their codes), how long until the process was SERVING again and
// until the first successful call that needed it; after the last fault it stops the load and
// checks that no acknowledged write was lost (acknowledged.ts) and that every event reached every
// consumer exactly once (the fault suite's delivery checker).
//
// Used by tests/chaos/chaos.test.ts (one short round) and scripts/chaos.mjs (`npm run chaos`).
import { join } from "node:path";
import type { Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { tempDir } from "@taskmesh/platform/testing";
import { builtServices, type RunningSystem, startSystem } from "@taskmesh/runner";
import { connect } from "nats";
import { checkDelivery, formatReport, type Report } from "../faults/checker.js";
import { type AcknowledgedReport, type Ambiguous, verifyAcknowledged } from "./acknowledged.js";
import { type CallRecord, Load, VirtualUser } from "./load.js";
import {
  CLIENT_FACING,
  outboxHead,
  probeCall,
  probeNatsListening,
  probeOutboxDrained,
  probeRepublished,
  probeServing,
} from "./probes.js";

export interface ChaosOptions {
  /** Rounds of faults (every process once per round). Default 1. */
  rounds?: number;
  /** Keep starting rounds until the load has run this long, ms (at least `rounds` rounds). Default 0. */
  durationMs?: number;
  /** Virtual users. Default 4. */
  concurrency?: number;
  /** Mean think time of a virtual user between calls, ms. Default 100. */
  thinkMs?: number;
  /** Load before the first fault (the baseline row), ms. Default 2000. */
  baselineMs?: number;
  /** How long a killed process stays down before it is started again, ms. Default 1000. */
  downMs?: number;
  /** Load after a process recovered, before the next fault, ms. Default 2000. */
  settleMs?: number;
  /** A process not recovered this long after its restart is reported as never recovered, ms. Default 30000. */
  recoveryTimeoutMs?: number;
  /** How long the delivery checker may wait for consumers to settle after the load, ms. Default 60000. */
  checkTimeoutMs?: number;
  /** Processes to kill, in order. Default: nats and every built service (see FAULT_ORDER). */
  faults?: readonly string[];
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
  /** Keep the data dir (logs, databases, JetStream) instead of removing it. Default false. */
  keepData?: boolean;
  /** Extra environment for every service, on top of CHAOS_ENV. */
  env?: Record<string, string>;
}

/**
 * The run measures crash recovery, not the gateway's rate limiter: per-user and sign-in limits
 * are off (0 = no limit), so neither the virtual users' sign-ups nor the delivery checker's burst
 * of reads at the end (one SearchTasks per task title) are refused with RESOURCE_EXHAUSTED.
 */
export const CHAOS_ENV: Readonly<Record<string, string>> = {
  RATE_LIMIT_RPS: "0",
  LOGIN_RATE_LIMIT_PER_MINUTE: "0",
  // The jetstream-loss fault waits for the outbox reconciler: a pass a second instead of ten.
  OUTBOX_RECONCILE_INTERVAL_MS: "1000",
};

/**
 * Not a process: JetStream loses the last few messages of TASKS it had acknowledged (deleted
 * behind the services' backs, as after a power cut with lazy fsync); recovered when tasks'
 * outbox reconciler has published them again.
 */
export const JETSTREAM_LOSS = "jetstream-loss";

/** One row of the table: the baseline (no fault) or one fault, and the load during it. */
export interface PhaseRow {
  /** "none" for the baseline, else the process killed. */
  fault: string;
  round: number;
  /** Client calls that ended during the phase (from this kill to the next). */
  calls: number;
  failed: number;
  /** Failed calls by final code. */
  codes: Record<string, number>;
  /** Failed calls by operation ("create", "create (key)", "update", ...). */
  failedOps: Record<string, number>;
  /** Dashboards answered with a part missing (not failures: graceful degradation). */
  degraded: number;
  /** Kill → the restarted process ready (as the runner waits for it), ms. */
  restartMs?: number;
  /** Kill → its health SERVING again (nats: accepting connections), ms. */
  servingMs?: number;
  /** Kill → the first successful call needing it (see `recoveredBy`), ms; undefined: never. */
  recoveryMs?: number;
  /** "call" (a client call through the gateway), "health" (no client call needs it alone), "outbox" (nats). */
  recoveredBy?: "call" | "health" | "outbox" | "republish";
  lost: number;
  doubled: number;
}

export interface ChaosResult {
  rows: PhaseRow[];
  calls: number;
  failed: number;
  lost: number;
  doubled: number;
  /** Checker findings tied to no single task (per-user counters), counted in lost/doubled above. */
  unattributed: { lost: number; doubled: number };
  /** Failed creates whose task exists after all (not defects). */
  ambiguous: Ambiguous[];
  /** Tasks the run checked (acknowledged + ambiguous). */
  tasksChecked: number;
  /** Each lost and doubled finding, one per line. */
  findings: string[];
  /** The delivery checker's last report, and why it could not finish if it could not. */
  delivery?: Report;
  deliveryError?: string;
  /** Processes that died without being killed by the run. */
  unexpectedExits: string[];
  dataDir: string;
  durationMs: number;
}

/**
 * Order of the faults: nats-server and the consumers first, so that events a killed consumer took
 * but never acknowledged come back (after the consumer's 30 s ack wait) while later faults run,
 * rather than after the last one; the gateway last.
 */
export const FAULT_ORDER = [
  "nats",
  "recurrence",
  "reminders",
  "analytics",
  "notifications",
  "users",
  "tasks",
  "gateway",
] as const;

export function defaultFaults(): string[] {
  const built: string[] = builtServices();
  return [
    "nats",
    ...(built.includes("tasks") ? [JETSTREAM_LOSS] : []),
    ...FAULT_ORDER.filter((f) => built.includes(f)),
    ...built.filter((s) => !(FAULT_ORDER as readonly string[]).includes(s)),
  ].filter((f, i, all) => all.indexOf(f) === i);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Phase {
  fault: string;
  round: number;
  startMs: number;
  restartMs?: number;
  servingMs?: number;
  recoveryMs?: number;
  recoveredBy?: PhaseRow["recoveredBy"];
}

export async function runChaos(opts: ChaosOptions = {}): Promise<ChaosResult> {
  const log = opts.log ?? (() => {});
  const faults = opts.faults ?? defaultFaults();
  const data = tempDir("taskmesh-chaos-");
  const unexpectedExits: string[] = [];
  const started = Date.now();
  let system: RunningSystem | undefined;
  try {
    log(`starting nats-server and ${builtServices().join(", ")} in ${data.path}`);
    system = await startSystem({
      dataDir: data.path,
      freePorts: true,
      logLevel: "warn",
      env: { ...CHAOS_ENV, ...opts.env },
      onUnexpectedExit: (name, status) => unexpectedExits.push(`${name}: ${status}`),
    });
    const sys = system;
    const gateway = sys.endpoints.gateway;
    const load = new Load({ gateway, concurrency: opts.concurrency ?? 4, thinkMs: opts.thinkMs ?? 100 });
    await load.signUp();
    // A user of its own for the recovery probes, so their calls are not counted as the load's.
    const prober = new VirtualUser(0, new Load({ gateway, concurrency: 0 }), gateway);
    await prober.signUp();

    const phases: Phase[] = [{ fault: "none", round: 0, startMs: Date.now() }];
    log(`load: ${load.users.length} virtual users over gRPC h2c at ${gateway}`);
    load.start();
    try {
      await sleep(opts.baselineMs ?? 2000);
      const rounds = opts.rounds ?? 1;
      for (let round = 1; ; round++) {
        for (const fault of faults) {
          const phase: Phase = { fault, round, startMs: Date.now() };
          load.phase = phases.length;
          phases.push(phase);
          await inject(sys, load, phase, prober.token, opts);
          log(
            `round ${round} ${fault}: SERVING after ${fmt(phase.servingMs)}, recovered (${phase.recoveredBy}) after ${fmt(phase.recoveryMs)}`,
          );
          await sleep(opts.settleMs ?? 2000);
        }
        if (round >= rounds && Date.now() - started >= (opts.durationMs ?? 0)) break;
      }
    } finally {
      await load.stop();
    }
    log(`load stopped after ${load.records.length} calls; checking`);

    // Acknowledged writes against what tasks holds now.
    const actual = new Map<string, Task[]>();
    for (const u of load.users) actual.set(u.userId, await u.listAll());
    const acked = verifyAcknowledged(load.tasks, load.unanswered, actual);

    // Every event of those tasks delivered and applied exactly once, in every consumer.
    const { report, error } = await settledDelivery(
      {
        natsUrl: sys.endpoints.nats,
        dataDir: data.path,
        gateway,
        remindersAddr: sys.endpoints.grpc.reminders ?? "",
        serviceSecret: sys.serviceSecret,
        users: load.users.map((u) => ({ userId: u.userId, token: u.token })),
        taskIds: acked.taskIds,
      },
      opts.checkTimeoutMs ?? 60_000,
      log,
    );
    const lastPhases = new Map(load.tasks.map((t) => [t.id, t.lastPhase]));
    return summarize(
      phases,
      load.records,
      acked,
      lastPhases,
      actual,
      report,
      error,
      unexpectedExits,
      data.path,
      started,
    );
  } finally {
    await system?.stop();
    if (!opts.keepData) data.remove();
  }
}

/** Kills `phase.fault`, keeps it down, restarts it, and measures when it is back. */
async function inject(sys: RunningSystem, load: Load, phase: Phase, token: string, opts: ChaosOptions) {
  const name = phase.fault;
  const tasksDb = join(sys.dataDir, "tasks.db");
  if (name === JETSTREAM_LOSS) return await loseMessages(sys, tasksDb, phase, opts);
  const killMs = Date.now();
  await sys.kill(name, "SIGKILL");
  const deadMs = Date.now();
  const stop = new AbortController();
  const proc = sys.services[name];
  if (!proc) throw new Error(`no process named ${name}`);
  const address = name === "gateway" ? new URL(sys.endpoints.gateway).host : `127.0.0.1:${proc.port}`;
  const serving = name === "nats" ? probeNatsListening(proc.port, stop.signal) : probeServing(address, stop.signal);
  await sleep(opts.downMs ?? 1000);
  await sys.restart(name);
  phase.restartMs = Date.now() - killMs;
  let recovery: Promise<number | undefined>;
  if (name === "nats") {
    // What tasks wrote to its outbox while nats-server was down, in JetStream.
    phase.recoveredBy = "outbox";
    recovery = probeOutboxDrained(tasksDb, outboxHead(tasksDb), stop.signal);
  } else if ((CLIENT_FACING as readonly string[]).includes(name)) {
    phase.recoveredBy = "call";
    recovery = probeCall(sys.endpoints.gateway, token, name, stop.signal);
  } else {
    phase.recoveredBy = "health";
    recovery = serving;
  }
  const timer = setTimeout(() => stop.abort(), opts.recoveryTimeoutMs ?? 30_000);
  const [servingAt, probedAt] = await Promise.all([serving, recovery]);
  clearTimeout(timer);
  stop.abort();
  phase.servingMs = servingAt === undefined ? undefined : servingAt - killMs;
  let recoveredAt = probedAt;
  if (phase.recoveredBy === "call") {
    // The load's own first success that needed it, if earlier than the probe's.
    for (const r of load.records)
      if (r.ok && r.startMs >= deadMs && r.needs.includes(name) && (recoveredAt === undefined || r.endMs < recoveredAt))
        recoveredAt = r.endMs;
  }
  phase.recoveryMs = recoveredAt === undefined ? undefined : recoveredAt - killMs;
}

/** Deletes the last three task events from TASKS and measures until the reconciler restored them. */
async function loseMessages(sys: RunningSystem, tasksDb: string, phase: Phase, opts: ChaosOptions): Promise<void> {
  const startMs = Date.now();
  const nc = await connect({ servers: sys.endpoints.nats });
  let lastSeq: number;
  const lost: string[] = [];
  try {
    const jsm = await nc.jetstreamManager();
    lastSeq = (await jsm.streams.info("TASKS")).state.last_seq;
    for (let seq = lastSeq; seq > 0 && lost.length < 3; seq--) {
      const m = await jsm.streams.getMessage("TASKS", { seq }).catch(() => undefined);
      const id = m?.header?.get("Nats-Msg-Id");
      if (!id || id.includes(".r")) continue; // a republish of an earlier fault: leave it
      await jsm.streams.deleteMessage("TASKS", seq, false);
      lost.push(id);
    }
  } finally {
    await nc.close();
  }
  if (lost.length === 0) throw new Error("jetstream-loss: TASKS holds no task event to lose");
  // Nothing went down: the services kept serving throughout.
  phase.servingMs = Math.max(1, Date.now() - startMs);
  phase.recoveredBy = "republish";
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), opts.recoveryTimeoutMs ?? 30_000);
  const at = await probeRepublished(tasksDb, lost, lastSeq, stop.signal);
  clearTimeout(timer);
  phase.recoveryMs = at === undefined ? undefined : at - startMs;
}

/**
 * The delivery checker until the snapshot is stable and clean, or stable with a double (which
 * waiting cannot undo), or the time is up. Unlike expectEveryEventOnce it returns the report, so
 * the findings can be put in the rows of their faults.
 */
async function settledDelivery(
  opts: Parameters<typeof checkDelivery>[0],
  timeoutMs: number,
  log: (line: string) => void,
): Promise<{ report?: Report; error?: string }> {
  const deadline = Date.now() + timeoutMs;
  let report: Report | undefined;
  let error: string | undefined;
  let said = 0;
  for (;;) {
    try {
      report = await checkDelivery(opts);
      error = undefined;
      if (report.stable && (report.doubledCount > 0 || report.lostCount === 0)) return { report };
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) break;
    if (Date.now() - said > 10_000) {
      said = Date.now();
      log(
        `delivery: ${report?.lostCount ?? "?"} lost, ${report?.doubledCount ?? "?"} doubled so far; ` +
          `${report?.unsettled.join(", ") || (error ? `error: ${error}` : "stream moved")}; waiting`,
      );
    }
    await sleep(1000);
  }
  // Stable but still lost: the findings are final. Not stable: they may be only the skew.
  if (report?.stable) return { report };
  return {
    ...(report ? { report } : {}),
    error: `no stable snapshot within ${timeoutMs} ms${error ? ` (${error})` : ""}`,
  };
}

function summarize(
  phases: Phase[],
  records: readonly CallRecord[],
  acked: AcknowledgedReport,
  lastPhases: ReadonlyMap<string, number>,
  actual: ReadonlyMap<string, readonly Task[]>,
  delivery: Report | undefined,
  deliveryError: string | undefined,
  unexpectedExits: string[],
  dataDir: string,
  started: number,
): ChaosResult {
  const rows: PhaseRow[] = phases.map((p) => ({
    fault: p.fault,
    round: p.round,
    calls: 0,
    failed: 0,
    codes: {},
    failedOps: {},
    degraded: 0,
    ...(p.restartMs !== undefined ? { restartMs: p.restartMs } : {}),
    ...(p.servingMs !== undefined ? { servingMs: p.servingMs } : {}),
    ...(p.recoveryMs !== undefined ? { recoveryMs: p.recoveryMs } : {}),
    ...(p.recoveredBy ? { recoveredBy: p.recoveredBy } : {}),
    lost: 0,
    doubled: 0,
  }));
  const phaseAt = (ms: number) => {
    let i = 0;
    while (i + 1 < phases.length && (phases[i + 1]?.startMs ?? Infinity) <= ms) i++;
    return i;
  };
  for (const r of records) {
    const row = rows[phaseAt(r.endMs)] as PhaseRow;
    row.calls++;
    if (!r.ok) {
      row.failed++;
      const code = r.code ?? "?";
      row.codes[code] = (row.codes[code] ?? 0) + 1;
      row.failedOps[r.op] = (row.failedOps[r.op] ?? 0) + 1;
    } else if (r.missing) row.degraded++;
  }

  const findings: string[] = [];
  for (const f of acked.findings) {
    const row = rows[f.phase] as PhaseRow;
    row[f.kind]++;
    findings.push(`${f.kind.toUpperCase()} ${f.taskId} (${row.fault}): ${f.message}`);
  }
  // The delivery checker's findings, in the row of the last call about the task (an occurrence:
  // about its parent).
  const phaseOfTask = new Map<string, number>();
  for (const a of acked.ambiguous) phaseOfTask.set(a.taskId, a.phase);
  for (const f of acked.findings) phaseOfTask.set(f.taskId, f.phase);
  const parentOf = new Map<string, string>();
  for (const tasks of actual.values()) for (const t of tasks) if (t.parentTaskId) parentOf.set(t.id, t.parentTaskId);
  const unattributed = { lost: 0, doubled: 0 };
  if (delivery) {
    for (const [id, v] of delivery.verdicts) {
      const parent = parentOf.get(id) ?? "";
      const phase = phaseOfTask.get(id) ?? lastPhases.get(id) ?? phaseOfTask.get(parent) ?? lastPhases.get(parent);
      const row = phase === undefined ? undefined : rows[phase];
      if (row) {
        row.lost += v.lost.length;
        row.doubled += v.doubled.length;
      } else {
        unattributed.lost += v.lost.length;
        unattributed.doubled += v.doubled.length;
      }
    }
    const text = formatReport(delivery);
    if (text) findings.push(...text.split("\n").map((l) => l.trim()));
  }
  const sum = (k: "calls" | "failed" | "lost" | "doubled") => rows.reduce((s, r) => s + r[k], 0);
  return {
    rows,
    calls: sum("calls"),
    failed: sum("failed"),
    lost: sum("lost") + unattributed.lost,
    doubled: sum("doubled") + unattributed.doubled,
    unattributed,
    ambiguous: acked.ambiguous,
    tasksChecked: acked.taskIds.length,
    findings,
    ...(delivery ? { delivery } : {}),
    ...(deliveryError ? { deliveryError } : {}),
    unexpectedExits,
    dataDir,
    durationMs: Date.now() - started,
  };
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? "never" : `${(ms / 1000).toFixed(2)} s`;
}
