import { ConfigError } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import { type NatsLink, natsReady } from "./nats-link.js";
import type { OutboxRelay } from "./relay.js";

/**
 * Small pieces every event-producing service wires the same way (they were copied in users and
 * tasks): the NATS_URL config field, the caller's traceparent for an event, and the outbox watch.
 */

/** Default of NATS_URL. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/**
 * The `NATS_URL` config field for `loadConfig`: comma-separated `nats://` or `tls://` URLs, each
 * checked at start-up (nats.js would only fail later, in the background). Unset or empty means
 * `fallback` (default nats://127.0.0.1:4222). Parses to the list of servers.
 */
export function natsUrlField(fallback: string = DEFAULT_NATS_URL): {
  parse(name: string, raw: string | undefined): string[];
} {
  return {
    parse(name, raw) {
      return natsServers(name, raw === undefined || raw === "" ? fallback : raw);
    },
  };
}

/** `nats://a:4222,nats://b:4222` → its URLs; anything else is a ConfigError naming `name`. */
export function natsServers(name: string, raw: string): string[] {
  const urls = raw.split(",").map((s) => s.trim());
  for (const u of urls) {
    let ok = false;
    try {
      const url = new URL(u);
      ok = (url.protocol === "nats:" || url.protocol === "tls:") && url.hostname !== "";
    } catch {}
    if (!ok) throw new ConfigError(`${name} must be nats://host:port (comma-separated for several), got "${raw}"`);
  }
  return urls;
}

/** Health service name that mirrors the NATS link. It is not readiness: writes go on while NATS is away. */
export const NATS_HEALTH_SERVICE = "nats";

export interface WatchOutboxOptions {
  /** The service's relay; without one (a service that only consumes) only the "nats" entry is kept. */
  relay?: OutboxRelay;
  link: NatsLink;
  /** The gRPC server's health (GrpcServer.health). */
  health: { setStatus(service: string, status: "SERVING" | "NOT_SERVING"): void };
  logger: Logger;
  /** How often the backlog is checked and, while events wait, logged, ms. @default 5000 */
  intervalMs?: number;
}

/** The defaults of WatchOutboxOptions. */
export const WATCH_OUTBOX_DEFAULTS: Readonly<Required<Pick<WatchOutboxOptions, "intervalMs">>> = { intervalMs: 5000 };

/**
 * Reports the outbox while the service runs: the NATS link as the health entry "nats" (so
 * `grpc_health_probe -service nats` or grpcurl show it), and a warning every `intervalMs` while
 * events wait (backlog, whether NATS is connected), then one line when the backlog has drained.
 * Returns the function that stops it.
 */
export function watchOutbox(opts: WatchOutboxOptions): () => void {
  const { relay, link, health, logger } = opts;
  const mirror = () => health.setStatus(NATS_HEALTH_SERVICE, natsReady(link) ? "SERVING" : "NOT_SERVING");
  let waiting = false;
  const check = () => {
    mirror();
    if (!relay) return;
    const backlog = relay.backlog();
    if (backlog > 0) {
      waiting = true;
      logger.warn({ backlog, natsConnected: link.connected }, "events waiting in the outbox");
    } else if (waiting) {
      waiting = false;
      logger.info({ published: relay.stats.published }, "outbox drained");
    }
  };
  mirror();
  const unsubscribe = link.onConnect(mirror);
  const timer = setInterval(check, opts.intervalMs ?? WATCH_OUTBOX_DEFAULTS.intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    unsubscribe();
    health.setStatus(NATS_HEALTH_SERVICE, "NOT_SERVING");
  };
}
