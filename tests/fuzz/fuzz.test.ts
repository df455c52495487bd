// Fuzzing every public method through the gateway of the running system (real processes, as
// `npm start` runs them). FUZZ_COUNT cases (default 300), FUZZ_SEED to repeat a run (printed),
// FUZZ_ONLY=3,17 to replay single cases, FUZZ_REPORT=<file> to keep the report as JSON.
// `npm run fuzz -- --count 5000` runs this file for a long run and prints the summary table.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type E2E, startE2E } from "../e2e/harness.js";
import { type FuzzReport, runFuzz } from "./driver.js";
import { randomSeed } from "./prng.js";
import { formatReport } from "./report.js";
import { fuzzTargets } from "./schema.js";

const count = Number(process.env.FUZZ_COUNT ?? 300);
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : randomSeed();
const concurrency = Number(process.env.FUZZ_CONCURRENCY ?? 8);
const only = process.env.FUZZ_ONLY ? process.env.FUZZ_ONLY.split(",").map(Number) : undefined;

let e2e: E2E;
let report: FuzzReport;

beforeAll(
  async () => {
    e2e = await startE2E();
    report = await runFuzz({
      system: e2e.system,
      count,
      seed,
      concurrency,
      ...(only ? { only } : {}),
      // FUZZ_DEBUG=CreateTask prints every answer of the methods whose name contains it.
      onAnswer: (_d, _t, c, o) => {
        const debug = process.env.FUZZ_DEBUG;
        if (debug && `${c.method.parent.name}.${c.method.name}`.includes(debug))
          console.log(
            `#${c.index} ${c.method.name} ${c.protocol} → ${o.code} ${o.message.slice(0, 200)} [${c.labels.join("; ")}]`,
          );
      },
    });
    const text = formatReport(report);
    console.log(text);
    if (process.env.FUZZ_REPORT) writeFileSync(process.env.FUZZ_REPORT, JSON.stringify({ ...report, text }, null, 2));
  },
  120_000 + count * 100,
);

afterAll(async () => {
  await e2e?.stop();
});

/** The findings as text, so a failing assertion shows the cases to reproduce. */
const show = (list: FuzzReport["offenders"]) =>
  list.map(
    (f) =>
      `${f.why} ${f.method} ${f.protocol} ${f.code} ${JSON.stringify(f.message)} (${f.replay}; ${f.labels.join("; ")})`,
  );

describe(`fuzzing every public method through the gateway (seed ${seed})`, () => {
  it("fuzzes every service the gateway lists in reflection, and every one has a descriptor", async () => {
    const targets = await fuzzTargets(e2e.system.endpoints.gateway);
    expect(targets.unknown).toEqual([]);
    expect(targets.services.map((s) => s.typeName)).toEqual(
      expect.arrayContaining(["taskmesh.users.v1.UserService", "taskmesh.tasks.v1.TaskService"]),
    );
    expect(report.services).toEqual(targets.services.map((s) => s.typeName));
    if (!only) expect(report.sent).toBe(count);
  });

  it("leaves every process SERVING on grpc.health.v1", () => {
    expect(Object.keys(report.health).length).toBeGreaterThan(0);
    for (const [name, status] of Object.entries(report.health)) expect([name, status]).toEqual([name, "SERVING"]);
  });

  it("answers no input with INTERNAL, UNKNOWN or HTTP 500", () => {
    expect(show(report.offenders)).toEqual([]);
  });

  it("answers every request with a status (no timeout, reset or missing grpc-status)", () => {
    expect(show(report.noAnswer)).toEqual([]);
  });

  it("never puts a stack trace, SQL or a file path in an error", () => {
    expect(show(report.leaks)).toEqual([]);
  });

  it("stores nothing from rejected input: every new task came from an OK CreateTask, the others are unchanged", () => {
    expect(report.storage.unexplained).toEqual([]);
    expect(report.storage.lost).toEqual([]);
    expect(report.storage.after - report.storage.before).toBeLessThanOrEqual(report.storage.okCreates);
  });
});
