import { Code } from "@connectrpc/connect";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Api,
  connectJsonApi,
  type E2E,
  fails,
  grpcApi,
  type JsonObject,
  ok,
  type SignedUp,
  signUp,
  startE2E,
  tokenSignedByStranger,
  tokenSignedByUsers,
} from "./harness.js";

let e2e: E2E;
beforeAll(async () => {
  e2e = await startE2E();
});
afterAll(async () => {
  await e2e?.stop();
});

const apis: Array<[string, () => Api]> = [
  ["gRPC over h2c", () => grpcApi(e2e.system.endpoints.gateway)],
  ["Connect JSON over HTTP/1.1", () => connectJsonApi(e2e.system.endpoints.gateway)],
];

const valid = {
  title: "Weekly review",
  dueTime: "2030-01-07T08:00:00Z",
  timeZone: "Europe/Paris",
  recurrenceRule: "FREQ=WEEKLY;BYDAY=MO",
  reminderOffsets: ["900s"],
};

describe.each(apis)("bad input through the gateway with %s", (_, makeApi) => {
  let api: Api;
  let me: SignedUp;
  const now = () => Math.floor(Date.now() / 1000);
  const create = (task: JsonObject | undefined, token = me.token) =>
    api.call(TaskService.method.createTask, task === undefined ? {} : { task }, token);
  const myTasks = async () => ok(await api.call(TaskService.method.listTasks, {}, me.token)).tasks ?? [];

  beforeAll(async () => {
    api = makeApi();
    me = await signUp(api);
  });

  it("answers INVALID_ARGUMENT naming the field, and stores nothing", async () => {
    fails(await create(undefined), Code.InvalidArgument, /task/);
    const { title: _, ...untitled } = valid;
    fails(await create(untitled), Code.InvalidArgument, /title/);
    fails(await create({ ...valid, title: "" }), Code.InvalidArgument, /title/);
    fails(await create({ ...valid, title: "x".repeat(501) }), Code.InvalidArgument, /title/);
    fails(await create({ ...valid, recurrenceRule: "FREQ=SOMETIMES;BYDAY=XX" }), Code.InvalidArgument, /recurrence/i);
    fails(await create({ ...valid, timeZone: "Mars/Olympus_Mons" }), Code.InvalidArgument, /time_?zone/i);
    fails(
      await api.call(TaskService.method.getTask, { taskId: "not-a-uuid" }, me.token),
      Code.InvalidArgument,
      /task_?id/i,
    );
    expect(await myTasks()).toEqual([]);
    // The same task with a good title is accepted: the rejections above were about those fields.
    const accepted = ok(await create({ ...valid, title: "x".repeat(500) })).task as JsonObject;
    expect(await myTasks()).toHaveLength(1);
    ok(await api.call(TaskService.method.deleteTask, { taskId: accepted.id as string }, me.token));
  });

  it("refuses a malformed registration with INVALID_ARGUMENT", async () => {
    fails(
      await api.call(UserService.method.register, { email: "not-an-email", password: "correct-horse-battery" }),
      Code.InvalidArgument,
      /email/,
    );
    fails(
      await api.call(UserService.method.register, { email: "short@example.com", password: "short" }),
      Code.InvalidArgument,
      /password/,
    );
    fails(
      await api.call(UserService.method.login, { email: "short@example.com", password: "short" }),
      Code.Unauthenticated,
    );
  });

  it("answers UNAUTHENTICATED to a missing, malformed, expired or wrongly signed token, and stores nothing", async () => {
    const expired = await tokenSignedByUsers(e2e.dataDir, me.userId, { iat: now() - 7200, exp: now() - 3600 });
    const stranger = await tokenSignedByStranger(e2e.dataDir, me.userId);
    // A flipped character inside the signature (one appended at its end may only add ignored bits).
    const [head, payload, sig = ""] = me.token.split(".");
    const mid = Math.floor(sig.length / 2);
    const tampered = `${head}.${payload}.${sig.slice(0, mid)}${sig[mid] === "A" ? "B" : "A"}${sig.slice(mid + 1)}`;
    const bad: Array<[string, string | undefined]> = [
      ["missing", undefined],
      ["empty", ""],
      ["not a JWT", "not-a-jwt"],
      ["three garbage parts", "a.b.c"],
      ["tampered signature", tampered],
      ["expired", expired],
      ["signed by another key", stranger],
    ];
    for (const [label, token] of bad) {
      // Straight to api.call: create()'s default would put the good token back for `undefined`.
      const created = await api.call(TaskService.method.createTask, { task: valid }, token);
      const listed = await api.call(TaskService.method.listTasks, {}, token);
      expect([label, created.ok ? "accepted" : created.codeName]).toEqual([label, "Unauthenticated"]);
      expect([label, listed.ok ? "accepted" : listed.codeName]).toEqual([label, "Unauthenticated"]);
    }
    expect(await myTasks()).toEqual([]);
  });

  it("answers UNAUTHENTICATED to a token of users' own key issued in the future or good for 100 years", async () => {
    const future = await tokenSignedByUsers(e2e.dataDir, me.userId, {
      iat: now() + 3600,
      nbf: now(),
      exp: now() + 7200,
    });
    const forever = await tokenSignedByUsers(e2e.dataDir, me.userId, { iat: now(), exp: now() + 100 * 365 * 86_400 });
    for (const [label, token, why] of [
      ["iat in the future", future, /claim iat is in the future/],
      ["100-year lifetime", forever, /claim exp is more than 86400 s after iat/],
    ] as const) {
      const listed = await api.call(TaskService.method.listTasks, {}, token);
      expect([label, listed.ok ? "accepted" : listed.codeName]).toEqual([label, "Unauthenticated"]);
      if (!listed.ok) expect(listed.message).toMatch(why);
    }
  });

  it("accepts a token it signed itself with claims like ours (so the rejections above are about expiry and signature)", async () => {
    const fresh = await tokenSignedByUsers(e2e.dataDir, me.userId, { iat: now(), exp: now() + 600 });
    ok(await api.call(TaskService.method.listTasks, {}, fresh));
  });
});
