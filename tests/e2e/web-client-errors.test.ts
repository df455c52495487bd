// The web client's error words (web/src/lib/errors.ts) for what a real gateway answers, called
// as the browser calls it: connect-web's Connect transport over fetch.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { build, type GatewayApp, loadGatewayConfig } from "@taskmesh/gateway/server";
import { UserService } from "@taskmesh/gen/taskmesh/users/v1/users_pb";
import { createLogger } from "@taskmesh/platform";
import { freePort } from "@taskmesh/platform/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeError } from "../../web/src/lib/errors.js";

let gateway: GatewayApp;
let baseUrl: string;

beforeAll(async () => {
  // No backends: the sign-in limiter answers before any is called (one attempt per minute here).
  gateway = build(
    loadGatewayConfig({
      GRPC_PORT: "0",
      LOG_LEVEL: "silent",
      USERS_ADDR: `127.0.0.1:${await freePort()}`,
      JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json`,
      LOGIN_RATE_LIMIT_PER_MINUTE: "1",
      LOGIN_RATE_LIMIT_BURST: "1",
      BACKEND_TIMEOUT_MS: "500",
      SHUTDOWN_GRACE_MS: "100",
    }),
    { logger: createLogger("web-errors-test", { level: "silent" }) },
  );
  baseUrl = `http://127.0.0.1:${(await gateway.listen()).grpcPort}`;
});
afterAll(() => gateway?.shutdown());

describe("web client error messages", () => {
  it("says 'too many attempts, try again in N s' from the gateway's RetryInfo", async () => {
    const users = createClient(UserService, createConnectTransport({ baseUrl }));
    const login = () => users.login({ email: "ada@example.com", password: "wrong password" }).catch((e) => e);
    await login(); // the one attempt the bucket holds (the absent backend makes it UNAVAILABLE)
    const problem = describeError(await login());
    expect(problem.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(problem.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(problem.message).toBe(`Too many attempts, try again in ${problem.retryAfterSeconds} s.`);
  });

  it("reports an unreachable gateway as such, not as a server error", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const users = createClient(UserService, createConnectTransport({ baseUrl: closed }));
    const problem = describeError(await users.login({ email: "a@example.com", password: "x" }).catch((e) => e));
    expect(problem.unreachable).toBe(true);
    expect(problem.message).toMatch(/Cannot reach the taskmesh server/);
  });

  it("names each field of an INVALID_ARGUMENT, in the services' wording", () => {
    // The message validateRequest (platform) and the tasks rules write; the browser suite sees it end to end.
    const problem = describeError(
      new ConnectError(
        "invalid request: task.title: value length must be at least 1 characters [string.min_len]; task.reminder_offsets[0]: value must be less than or equal to 2592s [duration.lte]",
        Code.InvalidArgument,
      ),
    );
    expect(problem.fields).toEqual({
      title: "value length must be at least 1 characters",
      reminder_offsets: "value must be less than or equal to 2592s",
    });
    expect(problem.message).toBe(
      "title: value length must be at least 1 characters; reminder offsets: value must be less than or equal to 2592s",
    );
  });
});
