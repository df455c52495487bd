// Property-based fuzzing (fast-check) of every public unary method through the gateway of the
// running system: bodies from the proto descriptors (tests/fuzz/arbitraries.ts), sent as Connect
// JSON with a valid user token, so most get past authentication into validation and the services'
// own checks. A failing case is shrunk to a small one and printed with the seed to replay it.
//
// FUZZ_CASES cases (default 300; 10000 when CI is set), FUZZ_SEED to repeat a run.
// `npm run fuzz -- --cases 1000000` runs this file for a long run.
import type { DescMethod } from "@bufbuild/protobuf";
import { HealthCheckResponse_ServingStatus } from "@taskmesh/gen/grpc/health/v1/health_pb";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectJsonApi, type E2E, ok, type SignedUp, signUp, startE2E } from "../e2e/harness.js";
import { type Json, messageArb, rruleArb, timeZoneArb, urlArb } from "./arbitraries.js";
import { findLeaks } from "./checks.js";
import { fuzzTargets } from "./schema.js";
import { endsSession } from "./transport.js";

const cases = Number(process.env.FUZZ_CASES ?? (process.env.CI ? 10_000 : 300));
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) | 0 : Date.now() | 0;
/** An answer later than this counts as a hang (the gateway's own deadlines are 10 s at most). */
const ANSWER_WITHIN_MS = 15_000;

let e2e: E2E;
let me: SignedUp;
/** A second session of `me` for Logout, so a fuzzed Logout does not sign `me` out of users. */
let logoutToken: string;
let methods: DescMethod[];

beforeAll(async () => {
  e2e = await startE2E();
  const api = connectJsonApi(e2e.system.endpoints.gateway);
  me = await signUp(api);
  logoutToken = ok(await api.call(UserService.method.login, { email: me.email, password: me.password }))
    .accessToken as string;
  methods = (await fuzzTargets(e2e.system.endpoints.gateway)).methods.filter((m) => m.methodKind === "unary");
}, 120_000);
afterAll(async () => {
  await e2e?.stop();
});

interface Answer {
  status: number;
  code: string;
  message: string;
}

/** One Connect JSON call over HTTP/1.1; the HTTP status and the Connect error code ("ok" on 200). */
async function call(method: DescMethod, body: Json, token = me.token): Promise<Answer> {
  const res = await fetch(`${e2e.system.endpoints.gateway}/${method.parent.typeName}/${method.name}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
  });
  const text = await res.text();
  if (res.status === 200) return { status: 200, code: "ok", message: "" };
  let parsed: { code?: string; message?: string } = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    // not a Connect error body: judged by the status
  }
  return { status: res.status, code: parsed.code ?? "none", message: parsed.message ?? text.slice(0, 300) };
}

/** What must hold for every answer. */
function judge(method: DescMethod, body: Json, a: Answer): void {
  const where = `${method.parent.name}.${method.name}`;
  expect([where, a.status]).not.toEqual([where, 500]);
  expect(["internal", "unknown", "data_loss", "none"], `${where} answered ${a.code}: ${a.message}`).not.toContain(
    a.code,
  );
  expect(findLeaks(a.message, JSON.stringify(body)), `${where}: ${a.message}`).toEqual([]);
}

describe(`property-based fuzzing of every public unary method (${cases} cases, seed ${seed})`, () => {
  it(
    "answers every descriptor-generated body with a status of the caller's making, never a leak",
    async () => {
      const request = fc
        .constantFrom(...methods)
        .chain((m) => messageArb(m.input).map((body) => ({ method: m, body })));
      const tally = new Map<string, number>();
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(request, async ({ method, body }) => {
          const a = await call(method, body, endsSession(method) ? logoutToken : me.token);
          const key = `${method.name} ${a.code}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          judge(method, body, a);
        }),
        { numRuns: cases, seed, endOnFailure: false },
      );
      // The fuzz user is still signed in (a fuzzed Logout ended only its own second session), so
      // the users methods were reached past authentication throughout.
      const getMe = methods.find((m) => m.parent.typeName === UserService.typeName && m.name === "GetMe");
      expect(getMe && (await call(getMe, {}, me.token)).code).toBe("ok");
      // What the cases reached, so a generator that never gets past validation shows.
      const lines = [...tally].sort().map(([k, v]) => `  ${k}: ${v}`);
      console.log(`${cases} cases in ${((Date.now() - started) / 1000).toFixed(1)} s:\n${lines.join("\n")}`);
    },
    60_000 + cases * 100,
  );

  it(
    "answers well-formed CreateTask and UpdatePreferences with fuzzed RRULEs, zones, due times and webhook URLs cleanly, and fast",
    async () => {
      const byName = (n: string) => methods.find((m) => m.name === n) as DescMethod;
      const task = fc.record({
        title: fc.string({ minLength: 1, maxLength: 50 }).filter((t) => t.trim() !== ""),
        dueTime: fc
          .date({ min: new Date("1970-01-01"), max: new Date("2200-01-01"), noInvalidDate: true })
          .map((d) => d.toISOString()),
        timeZone: timeZoneArb,
        recurrenceRule: rruleArb,
      });
      const prefs = urlArb.map((webhookUrl) => ({ preferences: { channels: ["WEBHOOK"], webhookUrl } }));
      const request = fc.oneof(
        task.map((t) => ({ method: byName("CreateTask"), body: { task: t } as Json })),
        prefs.map((p) => ({ method: byName("UpdatePreferences"), body: p as Json })),
      );
      const tally = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(request, async ({ method, body }) => {
          const started = Date.now();
          const a = await call(method, body);
          // The RRULE budget (100 ms CPU) keeps even a never-matching rule's answer quick.
          expect(Date.now() - started, JSON.stringify(body)).toBeLessThan(5000);
          if (process.env.FUZZ_DEBUG && method.name.includes(process.env.FUZZ_DEBUG)) console.log(a.code, a.message);
          tally.set(`${method.name} ${a.code}`, (tally.get(`${method.name} ${a.code}`) ?? 0) + 1);
          judge(method, body, a);
        }),
        { numRuns: Math.max(50, Math.floor(cases / 3)), seed },
      );
      console.log(
        [...tally]
          .sort()
          .map(([k, v]) => `  ${k}: ${v}`)
          .join("\n"),
      );
    },
    120_000 + cases * 100,
  );

  it("answers deeply nested and huge bodies with a clean error", async () => {
    const deep = fc.integer({ min: 20, max: 2000 }).map((d) => {
      let v: Json = { title: "x" };
      for (let i = 0; i < d; i++) v = { task: v };
      return v;
    });
    const huge = fc
      .integer({ min: 1, max: 3 })
      .map((mb) => ({ task: { title: "x", notes: "n".repeat(mb * 1024 * 1024) } }));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), fc.oneof(deep, huge), async (method, body) => {
        judge(method, body, await call(method, body));
      }),
      { numRuns: Math.min(50, Math.max(10, Math.floor(cases / 100))), seed },
    );
  }, 120_000);

  it("leaves the gateway SERVING afterwards", async () => {
    const res = await fetch(`${e2e.system.endpoints.gateway}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(((await res.json()) as { status?: string }).status).toBe(
      HealthCheckResponse_ServingStatus[HealthCheckResponse_ServingStatus.SERVING],
    );
  });
});
