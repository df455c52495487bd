import { faultDrillHooks } from "@taskmesh/platform";
import { parseFaultDrills } from "@taskmesh/platform/testing";
import { describe, expect, it } from "vitest";

describe("TASKMESH_FAULT (fault drill hooks)", () => {
  it("is off when unset or empty", () => {
    expect(parseFaultDrills(undefined)).toEqual([]);
    expect(parseFaultDrills(" ")).toEqual([]);
  });

  it("reads a relay drill and a consumer drill, comma-separated", () => {
    expect(
      parseFaultDrills("relay:exit-after-puback:5, consumer:recurrence-task-completed:exit-mid-handler:1"),
    ).toEqual([
      { kind: "relay-exit-after-puback", n: 5 },
      { kind: "consumer-exit-mid-handler", durable: "recurrence-task-completed", n: 1 },
    ]);
  });

  it("refuses a value it cannot parse instead of silently doing nothing", () => {
    expect(() => parseFaultDrills("relay:exit-after-puback:0")).toThrow(
      /TASKMESH_FAULT: cannot parse "relay:exit-after-puback:0"/,
    );
    expect(() => parseFaultDrills("consumer::exit-mid-handler:1")).toThrow(/cannot parse/);
    expect(() => parseFaultDrills("relay:exit-before-puback:1")).toThrow(/cannot parse/);
  });

  it("reads a saga drill: the step after which the orchestrator dies", () => {
    expect(parseFaultDrills("saga:exit-after-step:purge_tasks, relay:exit-after-puback:2")).toEqual([
      { kind: "saga-exit-after-step", step: "purge_tasks" },
      { kind: "relay-exit-after-puback", n: 2 },
    ]);
    expect(() => parseFaultDrills("saga:exit-after-step:")).toThrow(/cannot parse "saga:exit-after-step:"/);
    expect(() => parseFaultDrills("saga:exit-after-step:Purge-Tasks")).toThrow(/cannot parse/);
    expect(() => parseFaultDrills("saga:exit-before-step:purge_tasks")).toThrow(/cannot parse/);
    expect(() => parseFaultDrills("saga:exit-after-step:purge_tasks:1")).toThrow(/cannot parse/);
  });

  it("arms only the hooks a drill names, and refuses a saga step the process does not have", () => {
    const log: string[] = [];
    expect(faultDrillHooks(undefined, (m) => log.push(m))).toEqual({});
    const hooks = faultDrillHooks("consumer:recurrence-task-completed:exit-mid-handler:2", (m) => log.push(m));
    expect(Object.keys(hooks)).toEqual(["beforeCommit"]);
    expect(log).toEqual(["FAULT DRILL armed: SIGKILL recurrence-task-completed mid-handler #2"]);
    // Another consumer's events never count towards the drill (the process is still alive here).
    const ctx = { eventId: "e", consumer: "c", subject: "s", deliveryCount: 1, traceparent: undefined };
    for (let i = 0; i < 5; i++) hooks.beforeCommit?.("recurrence-user-deleted", {} as never, ctx);
    expect(() => faultDrillHooks("saga:exit-after-step:purge_tasks", () => {}, ["delete_account"])).toThrow(
      /saga:exit-after-step:purge_tasks: no such step \(steps: delete_account\)/,
    );
    expect(Object.keys(faultDrillHooks("saga:exit-after-step:purge_tasks", () => {}, ["purge_tasks"]))).toEqual([
      "afterSagaStep",
    ]);
    expect(() => faultDrillHooks("relay:exit-after-puback:0", () => {})).toThrow(/cannot parse/);
  });
});
