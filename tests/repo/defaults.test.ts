import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EVENT_CONSUMER_DEFAULTS } from "../../packages/platform/src/events/consumer.js";
import { NATS_LINK_DEFAULTS } from "../../packages/platform/src/events/nats-link.js";
import { OUTBOX_RECONCILER_DEFAULTS } from "../../packages/platform/src/events/reconciler.js";
import { OUTBOX_RELAY_DEFAULTS } from "../../packages/platform/src/events/relay.js";
import { SERVICE_EVENTS_DEFAULTS } from "../../packages/platform/src/events/service-events.js";
import { WATCH_OUTBOX_DEFAULTS } from "../../packages/platform/src/events/service-kit.js";

const EVENTS = join(import.meta.dirname, "..", "..", "packages", "platform", "src", "events");

/**
 * `@default <value>` of each field of `interface <name>` in `file`, for the values that are
 * plain JavaScript literals (numbers, arrays, objects); prose defaults ("OutboxRelay's") are
 * left out, as they name another option's default instead of repeating it.
 */
function documentedDefaults(file: string, name: string): Record<string, unknown> {
  const text = readFileSync(file, "utf8");
  const start = text.indexOf(`export interface ${name}`);
  if (start < 0) throw new Error(`${file} has no interface ${name}`);
  const body = text.slice(start, text.indexOf("\n}\n", start));
  const out: Record<string, unknown> = {};
  for (const m of body.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*(\w+)\?:/g)) {
    const doc = (m[1] ?? "").replace(/^\s*\* ?/gm, " ");
    const d = doc.match(/@default\s+(.+?)\s*$/s)?.[1];
    if (d === undefined) continue;
    try {
      out[m[2] as string] = Function(`"use strict"; return (${d});`)();
    } catch {
      // prose
    }
  }
  return out;
}

describe("documented option defaults", () => {
  const cases: [string, string, Readonly<Record<string, unknown>>][] = [
    ["nats-link.ts", "NatsLinkOptions", NATS_LINK_DEFAULTS],
    ["consumer.ts", "EventConsumerOptions", EVENT_CONSUMER_DEFAULTS],
    ["service-events.ts", "ServiceEventsOptions", SERVICE_EVENTS_DEFAULTS],
    ["service-kit.ts", "WatchOutboxOptions", WATCH_OUTBOX_DEFAULTS],
    ["reconciler.ts", "OutboxReconcilerOptions", OUTBOX_RECONCILER_DEFAULTS],
    ["relay.ts", "OutboxRelayOptions", OUTBOX_RELAY_DEFAULTS],
  ];
  for (const [file, iface, defaults] of cases) {
    it(`${iface}: every @default in the doc comment is the value the code resolves, and every resolved default is documented`, () => {
      expect(documentedDefaults(join(EVENTS, file), iface)).toEqual({ ...defaults });
    });
  }

  it("reads a documented default that differs from the code's (the check can fail)", () => {
    const doc = documentedDefaults(join(EVENTS, "nats-link.ts"), "NatsLinkOptions");
    expect(doc).not.toEqual({ ...NATS_LINK_DEFAULTS, reconnectTimeWaitMs: 5000 });
    expect(Object.keys(doc).sort()).toEqual(["firstConnectBackoff", "reconnectTimeWaitMs", "timeoutMs"]);
  });
});
