import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { type Envelope, UserRegisteredSchema } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { type Logger, type NatsLink, natsReady, newEvent, type OutboxRelay, STREAMS } from "@taskmesh/platform";

/**
 * What the users service publishes, each event through the outbox (written in the transaction
 * that makes the change), to the USERS stream:
 * - `user.registered` (UserRegistered: id, email, time zone) when an account is created;
 * - `user.deleted` arrives with the deletion saga.
 * It consumes nothing.
 */
export const USERS_STREAMS = [STREAMS.USERS] as const;

/** The event of a new account; `timeZone` is the account's at registration ("" = UTC). */
export function userRegistered(account: { id: string; email: string; timeZone: string }, at: Date): Envelope {
  return newEvent({
    userId: account.id,
    aggregateId: account.id,
    occurredAt: at,
    payload: {
      case: "userRegistered",
      value: create(UserRegisteredSchema, { userId: account.id, email: account.email, timeZone: account.timeZone }),
    },
  });
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The caller's W3C `traceparent` header if it is well-formed, so the event continues the request's trace. */
export function traceparentOf(ctx: HandlerContext): string | undefined {
  const v = ctx.requestHeader.get("traceparent")?.trim().toLowerCase();
  return v && TRACEPARENT.test(v) ? v : undefined;
}

/** Health service name that mirrors the NATS link. It is not readiness: writes go on while NATS is away. */
export const NATS_HEALTH_SERVICE = "nats";

/**
 * Reports the outbox while the service runs: the NATS link as the health entry "nats" (so
 * `grpc_health_probe -service nats` or grpcurl show it), and a warning every `intervalMs` while
 * events wait (backlog, whether NATS is connected), then one line when the backlog has drained.
 * Returns the function that stops it.
 */
export function watchOutbox(opts: {
  relay: OutboxRelay;
  link: NatsLink;
  health: { setStatus(service: string, status: "SERVING" | "NOT_SERVING"): void };
  logger: Logger;
  /** Default 5000 ms. */
  intervalMs?: number;
}): () => void {
  const { relay, link, health, logger } = opts;
  const mirror = () => health.setStatus(NATS_HEALTH_SERVICE, natsReady(link) ? "SERVING" : "NOT_SERVING");
  let waiting = false;
  const check = () => {
    mirror();
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
  const timer = setInterval(check, opts.intervalMs ?? 5000);
  timer.unref();
  return () => {
    clearInterval(timer);
    unsubscribe();
    health.setStatus(NATS_HEALTH_SERVICE, "NOT_SERVING");
  };
}
