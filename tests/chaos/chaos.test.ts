// The chaos suite in its short form: one round, every process (nats-server and every built
// service) SIGKILLed and restarted in turn under a steady load through the gateway. `npm run chaos`
// runs the longer form (scripts/chaos.mjs).
import { describe, expect, it } from "vitest";
import { defaultFaults, runChaos } from "./chaos.js";
import { formatChaosTable } from "./table.js";

describe("chaos: every process SIGKILLed and restarted in turn under a steady mixed load", () => {
  it("recovers from each fault, loses no acknowledged write, and loses or doubles no event effect", async () => {
    const result = await runChaos({
      rounds: 1,
      concurrency: 3,
      thinkMs: 100,
      baselineMs: 2000,
      downMs: 1000,
      settleMs: 1500,
      checkTimeoutMs: 50_000,
      log: (line) => process.stderr.write(`chaos: ${line}\n`),
    });
    process.stderr.write(`${formatChaosTable(result)}\n`);

    // The faults really happened under load: every process killed once, calls during each.
    expect(result.rows.map((r) => r.fault)).toEqual(["none", ...defaultFaults()]);
    expect(defaultFaults()).toEqual(expect.arrayContaining(["nats", "tasks", "gateway", "users"]));
    for (const r of result.rows) expect(r.calls, `client calls during ${r.fault}`).toBeGreaterThan(0);
    expect(result.tasksChecked).toBeGreaterThan(20);
    // No call fails while nothing is broken.
    expect(result.rows[0]?.failed, "failed calls before any fault").toBe(0);

    // Each process came back: SERVING again and, where a client call needs it, answering one.
    for (const r of result.rows.slice(1)) {
      expect(r.servingMs, `${r.fault} SERVING again`).toBeGreaterThan(0);
      expect(r.recoveryMs, `${r.fault} recovered (${r.recoveredBy})`).toBeGreaterThan(0);
    }
    expect(result.unexpectedExits).toEqual([]);

    // Nothing lost or doubled: acknowledged writes, and event effects in every consumer of TASKS.
    expect(result.deliveryError).toBeUndefined();
    expect(result.delivery?.stable).toBe(true);
    expect(result.delivery?.consumers).toEqual([
      expect.stringMatching(/^analytics-.+-tasks$/),
      "recurrence-task-completed",
      "reminders-tasks",
    ]);
    expect(result.findings).toEqual([]);
    expect(result.lost).toBe(0);
    expect(result.doubled).toBe(0);
  }, 170_000);
});
