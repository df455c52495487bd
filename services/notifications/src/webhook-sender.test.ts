import { outboundPolicy } from "@taskmesh/platform";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWebhookReceiver } from "./notifications.test-util.js";
import { WebhookSender } from "./webhook-sender.js";

const SECRET = "webhook-sender-test-secret";
const sending = { secret: SECRET, timeoutMs: 2000, attempts: 3, backoff: { initialMs: 10, maxMs: 20 } };

describe("WebhookSender against a real HTTP receiver on loopback", () => {
  let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let port: string;

  beforeAll(async () => {
    hooks = await startWebhookReceiver(SECRET);
    port = new URL(hooks.url("/")).port;
  });
  afterAll(() => hooks?.stop());

  it.each([
    ["an IPv4 loopback literal", () => `http://127.0.0.1:${port}/a`],
    ["a name that resolves to loopback at connect time (as after DNS rebinding)", () => `http://localhost:${port}/b`],
    ["an IPv4-mapped IPv6 loopback literal", () => `http://[::ffff:127.0.0.1]:${port}/c`],
    ["the metadata address", () => "http://169.254.169.254/latest/meta-data/"],
  ])("refuses %s without retrying and without reaching it", async (_, url) => {
    const sender = new WebhookSender(sending);
    const attempts: number[] = [];
    const before = hooks.hits.length;
    const err = await sender
      .send({ url: url(), payload: { x: 1 }, eventId: "e1", onAttempt: (n) => attempts.push(n) })
      .catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/refused: .*(loopback|linkLocal) address/);
    expect(attempts.length).toBeLessThanOrEqual(1);
    expect(hooks.hits.length).toBe(before);
  });

  it("delivers to a loopback receiver once WEBHOOK_ALLOWED_NETWORKS lets it through", async () => {
    const sender = new WebhookSender({ ...sending, policy: outboundPolicy("127.0.0.1/32") });
    const res = await sender.send({ url: `http://localhost:${port}/allowed`, payload: { x: 1 }, eventId: "e2" });
    expect(res).toEqual({ status: 200, attempts: 1 });
    expect(hooks.hits.filter((h) => h.path === "/allowed")).toMatchObject([{ signatureValid: true }]);
  });

  it("does not follow a redirect to a private address: a 3xx is the answer", async () => {
    const sender = new WebhookSender({ ...sending, policy: outboundPolicy("127.0.0.1/32") });
    hooks.script("/moved", [302]);
    const err = await sender
      .send({ url: `http://127.0.0.1:${port}/moved`, payload: {}, eventId: "e3" })
      .catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(/answered 302/);
    expect(hooks.hits.filter((h) => h.path === "/moved")).toHaveLength(1);
  });
});
