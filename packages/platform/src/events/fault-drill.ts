import type { Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import type { PubAck } from "nats";
import type { EventContext } from "./consumer.js";
import type { OutboxRow } from "./relay.js";

/**
 * FAULT DRILL HOOKS — for the fault-injection suite (tests/faults), off unless `TASKMESH_FAULT`
 * is set. They kill the process with SIGKILL at the two points where a crash is hardest to get
 * right, so the real recovery paths (republish + JetStream de-dup; redelivery + inbox + idempotent
 * external call) are exercised with real processes instead of a simulated throw:
 *
 * - `relay:exit-after-puback:<n>`: the outbox relay dies right after the n-th PubAck of this
 *   process, before it marks the row published (the row is republished by the next start).
 * - `consumer:<durable>:exit-mid-handler:<n>`: the consumer `<durable>` dies in the n-th event its
 *   handler runs for (duplicates skipped by the inbox do not count), after the handler's
 *   `external` effect and before the inbox transaction commits (the event is redelivered).
 * - `saga:exit-after-step:<step>`: a saga orchestrator (users' account deletion) dies right after
 *   the step `<step>` is durably logged as succeeded, before the next step starts (the next start
 *   resumes the saga from its log). The orchestrator refuses a step name it does not have.
 *
 * Several drills are separated by commas.
 */
export const FAULT_ENV = "TASKMESH_FAULT";

/**
 * The one fault-injection seam: hooks a service's build() hands to its relay, consumers and saga
 * orchestrator. Armed from TASKMESH_FAULT by main.ts (faultDrillHooks), or by a test directly.
 */
export interface FaultHooks {
  /** OutboxRelay: after a row's PubAck, before it is marked published (throwing leaves it unpublished). */
  afterPubAck?: (row: OutboxRow, ack: PubAck) => void;
  /** EventConsumer `durable`: after the handler's external effect, before the inbox transaction. */
  beforeCommit?: (durable: string, event: Envelope, ctx: EventContext) => void;
  /** Saga orchestrator: once a step's success is durably logged, before the next step starts. */
  afterSagaStep?: (step: string) => void;
}

export type FaultDrill =
  | { kind: "relay-exit-after-puback"; n: number }
  | { kind: "consumer-exit-mid-handler"; durable: string; n: number }
  | { kind: "saga-exit-after-step"; step: string };

/** Parses a `TASKMESH_FAULT` value (see above); empty or undefined is no drill. */
export function parseFaultDrills(raw: string | undefined): FaultDrill[] {
  if (!raw || raw.trim() === "") return [];
  return raw.split(",").map((part) => {
    const p = part.trim().split(":");
    const n = Number(p.at(-1));
    const valid = Number.isInteger(n) && n >= 1;
    if (p.length === 3 && p[0] === "relay" && p[1] === "exit-after-puback" && valid)
      return { kind: "relay-exit-after-puback", n };
    if (p.length === 4 && p[0] === "consumer" && p[1] && p[2] === "exit-mid-handler" && valid)
      return { kind: "consumer-exit-mid-handler", durable: p[1], n };
    if (p.length === 3 && p[0] === "saga" && p[1] === "exit-after-step" && /^[a-z][a-z0-9_]*$/.test(p[2] ?? ""))
      return { kind: "saga-exit-after-step", step: p[2] as string };
    throw new Error(
      `${FAULT_ENV}: cannot parse "${part}"; expected relay:exit-after-puback:<n>, consumer:<durable>:exit-mid-handler:<n> (n >= 1) or saga:exit-after-step:<step>`,
    );
  });
}

/** SIGKILL: no exit handlers, no flush, no graceful shutdown — exactly a crash. */
function die(): never {
  process.kill(process.pid, "SIGKILL");
  // SIGKILL is delivered synchronously to ourselves on Linux; this is never reached.
  throw new Error("fault drill: SIGKILL did not stop the process");
}

/** A counter that kills the process on its n-th call. */
function counter(n: number, log: (msg: string) => void, what: string): () => void {
  let calls = 0;
  log(`FAULT DRILL armed: SIGKILL ${what} #${n}`);
  return () => {
    calls++;
    if (calls === n) {
      log(`FAULT DRILL: SIGKILL ${what} #${n}`);
      die();
    }
  };
}

/**
 * The fault hooks armed by `raw` (a TASKMESH_FAULT value, see above), for a process whose saga
 * orchestrator (if any) has the steps `sagaSteps`. main.ts reads the variable once and passes the
 * hooks down through build(); nothing else reads it. A malformed value, or a saga step the process
 * does not have, throws (a drill that silently does nothing would make a fault test pass for the
 * wrong reason).
 */
export function faultDrillHooks(
  raw: string | undefined,
  log: (msg: string) => void,
  sagaSteps: readonly string[] = [],
): FaultHooks {
  const hooks: FaultHooks = {};
  for (const d of parseFaultDrills(raw)) {
    if (d.kind === "relay-exit-after-puback") {
      const hit = counter(d.n, log, "after PubAck");
      hooks.afterPubAck = () => hit();
    } else if (d.kind === "consumer-exit-mid-handler") {
      const hit = counter(d.n, log, `${d.durable} mid-handler`);
      const previous = hooks.beforeCommit;
      hooks.beforeCommit = (durable, event, ctx) => {
        previous?.(durable, event, ctx);
        if (durable === d.durable) hit();
      };
    } else {
      if (!sagaSteps.includes(d.step)) {
        throw new Error(
          `${FAULT_ENV}: saga:exit-after-step:${d.step}: no such step (steps: ${sagaSteps.join(", ") || "none in this service"})`,
        );
      }
      log(`FAULT DRILL armed: SIGKILL after saga step ${d.step}`);
      hooks.afterSagaStep = (step) => {
        if (step !== d.step) return;
        log(`FAULT DRILL: SIGKILL after saga step ${d.step}`);
        die();
      };
    }
  }
  return hooks;
}
