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
 * Several drills are separated by commas. The variable is read once, when the first relay,
 * consumer or saga orchestrator is constructed; a malformed value throws there (a drill that
 * silently does nothing would make a fault test pass for the wrong reason). Nothing else reads it.
 */
export const FAULT_ENV = "TASKMESH_FAULT";

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

let drills: FaultDrill[] | undefined;
function armed(): FaultDrill[] {
  drills ??= parseFaultDrills(process.env[FAULT_ENV]);
  return drills;
}

/** SIGKILL: no exit handlers, no flush, no graceful shutdown — exactly a crash. */
function die(): never {
  process.kill(process.pid, "SIGKILL");
  // SIGKILL is delivered synchronously to ourselves on Linux; this is never reached.
  throw new Error("fault drill: SIGKILL did not stop the process");
}

/** A counter that kills the process on its n-th call; undefined when no drill applies. */
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

/** For OutboxRelay: called after each PubAck, before the row is marked published. */
export function relayFaultDrill(log: (msg: string) => void): (() => void) | undefined {
  const d = armed().find((x) => x.kind === "relay-exit-after-puback");
  return d ? counter(d.n, log, "after PubAck") : undefined;
}

/** For EventConsumer `durable`: called after the handler's external effect, before the commit. */
export function consumerFaultDrill(durable: string, log: (msg: string) => void): (() => void) | undefined {
  const d = armed().find(
    (x): x is Extract<FaultDrill, { kind: "consumer-exit-mid-handler" }> =>
      x.kind === "consumer-exit-mid-handler" && x.durable === durable,
  );
  return d ? counter(d.n, log, `${durable} mid-handler`) : undefined;
}

/**
 * For a saga orchestrator whose steps are `steps`: called once a step's success is durably logged,
 * before the next step starts; kills the process after the armed step. Throws when the armed step
 * is not one of `steps` (a drill that can never fire is a mistake, not a no-op).
 */
export function sagaFaultDrill(
  steps: readonly string[],
  log: (msg: string) => void,
): ((step: string) => void) | undefined {
  const d = armed().find((x) => x.kind === "saga-exit-after-step");
  if (!d) return undefined;
  if (!steps.includes(d.step)) {
    throw new Error(`${FAULT_ENV}: saga:exit-after-step:${d.step}: no such step (steps: ${steps.join(", ")})`);
  }
  log(`FAULT DRILL armed: SIGKILL after saga step ${d.step}`);
  return (step) => {
    if (step !== d.step) return;
    log(`FAULT DRILL: SIGKILL after saga step ${d.step}`);
    die();
  };
}
