import { createHash } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Channel, type Envelope } from "@taskmesh/gen/taskmesh/events/v1/events_pb";
import { Kind } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { appendEvent, type EventContext, type EventHandler, type Logger, TransientError } from "@taskmesh/platform";
import type { EmailSender } from "./email-sender.js";
import { notificationSent } from "./events.js";
import type { LiveFeed } from "./live-feed.js";
import type { DeliveryChannel, NotificationsStore } from "./notifications-store.js";
import type { PreferencesSource, Routing } from "./preferences.js";
import type { PushSender } from "./push-sender.js";
import { isQuietAt } from "./quiet-hours.js";
import type { WebhookSender } from "./webhook-sender.js";

/** What `external` did for one due event; `apply` records it in the inbox transaction. */
export type DuePlan =
  | { kind: "drop"; reason: string }
  | {
      kind: "deliver";
      notification: Composed;
      /** Whether an in-app notification is stored. */
      inApp: boolean;
      /** Outcome of each external channel the user chose. */
      external: { channel: "email" | "webhook" | "push"; status: "sent" | "failed" | "skipped"; detail?: string }[];
    };

interface Composed {
  id: string;
  userId: string;
  kind: Kind;
  taskId: string;
  title: string;
  body: string;
  dueTime: number | undefined;
  occurredAt: number | undefined;
}

export interface DueEventDeps {
  store: NotificationsStore;
  preferences: PreferencesSource;
  /** Absent when SMTP_URL is unset: email is skipped ("email disabled"). */
  email: EmailSender | undefined;
  /** Absent when WEBHOOK_SECRET is unset: webhooks are skipped ("webhooks disabled"). */
  webhook: WebhookSender | undefined;
  /** Web Push to the user's registered devices (always configured: VAPID keys are generated if unset). */
  push: PushSender;
  feed: LiveFeed;
  clock: () => number;
  logger: Logger;
  /** Aborted at shutdown: a delivery waiting to retry gives up and the event is redelivered later. */
  stopping: AbortSignal;
}

const CHANNEL: Record<DeliveryChannel, Channel> = {
  in_app: Channel.IN_APP,
  email: Channel.EMAIL,
  webhook: Channel.WEBHOOK,
  push: Channel.PUSH,
};

/**
 * The notification's id, derived from the source event id (a name-based UUID, version 8 of RFC
 * 9562), so every attempt and every redelivery of one event speaks of the same notification.
 */
export function notificationIdFor(eventId: string): string {
  const h = createHash("sha256").update("taskmesh.notification\n").update(eventId).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x80;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/**
 * reminder.due / task.due → a notification on the user's channels.
 *
 * `external` (before the inbox transaction; repeated on a redelivery until that commits):
 * 1. reads the user's preferences from users (fallback: in-app only, UTC, no quiet hours;
 *    NOT_FOUND: the user is gone and the event is dropped);
 * 2. decides the channels: those the user chose, except that during quiet hours (on the user's
 *    wall clock) email and webhook are skipped and only in-app is delivered; and in-app also
 *    when nothing else delivered (quiet hours, a channel disabled here, a failed delivery), so a
 *    reminder is never lost;
 * 3. sends email and webhook, each guarded by the delivery log: a channel already `sent` (or
 *    given up as `failed`) for this event is not sent again; an attempt is recorded before it is
 *    made and the outcome after. If the process dies between a send and its record, the
 *    redelivery sends again, with the same Message-ID / Idempotency-Key so the receiver can tell.
 *
 * `apply` (in the inbox transaction, so at most once per event): stores the in-app row (UNIQUE on
 * the source event id), records skipped channels, and appends one `notification.sent` per
 * delivered channel to the outbox. The new row goes to WatchNotifications streams after commit.
 */
export function dueEventHandler(deps: DueEventDeps): EventHandler<DuePlan> {
  const { store, preferences, clock, logger } = deps;
  let emailDisabledLogged = false;
  let webhookDisabledLogged = false;

  async function deliverOnce(
    eventId: string,
    channel: "email" | "webhook" | "push",
    userId: string,
    send: (onAttempt: () => void) => Promise<unknown>,
  ): Promise<{ status: "sent" | "failed"; detail?: string }> {
    const prior = store.delivery(eventId, channel);
    if (prior?.status === "sent") return { status: "sent" };
    if (prior?.status === "failed") return { status: "failed", detail: prior.detail ?? "" };
    try {
      await send(() => store.recordAttempt(eventId, channel, userId, clock()));
    } catch (err) {
      // Shutting down mid-retry: the row stays "sending" and the redelivery tries again.
      if (err instanceof TransientError) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      store.recordOutcome({ eventId, channel, userId, status: "failed", detail }, clock());
      logger.warn({ eventId, channel, userId, detail }, `${channel} delivery failed; not retried further`);
      return { status: "failed", detail };
    }
    store.recordOutcome({ eventId, channel, userId, status: "sent" }, clock());
    return { status: "sent" };
  }

  return {
    async external(event: Envelope, ctx: EventContext): Promise<DuePlan> {
      const due = readDue(event);
      const lookup = await preferences.lookup(event.userId);
      if (lookup.kind === "gone") return { kind: "drop", reason: "user not found (deleted)" };
      const routing: Routing = lookup.routing;
      const quiet = isQuietAt(clock(), routing.timeZone, routing.quietHours);
      // Times are shown on the user's clock ("" = UTC, the contract's default); without an answer
      // from users, the task's own zone is a better guess than UTC.
      const zone = lookup.kind === "found" ? routing.timeZone || "UTC" : due.timeZone;
      const n = compose(event, due, zone);
      const external: Extract<DuePlan, { kind: "deliver" }>["external"] = [];

      if (routing.channels.email) {
        if (quiet) external.push({ channel: "email", status: "skipped", detail: "quiet hours" });
        else if (!deps.email) {
          if (!emailDisabledLogged)
            logger.warn("email is disabled (SMTP_URL is not set); email notifications are skipped");
          emailDisabledLogged = true;
          external.push({ channel: "email", status: "skipped", detail: "email disabled (SMTP_URL unset)" });
        } else if (!routing.email) external.push({ channel: "email", status: "skipped", detail: "no email address" });
        else {
          const sender = deps.email;
          const r = await deliverOnce(ctx.eventId, "email", n.userId, (onAttempt) =>
            sender.send({
              to: routing.email,
              subject: n.title,
              text: `${n.body}\n\n— taskmesh`,
              eventId: ctx.eventId,
              signal: deps.stopping,
              onAttempt,
            }),
          );
          external.push({ channel: "email", ...r });
        }
      }

      if (routing.channels.webhook) {
        if (quiet) external.push({ channel: "webhook", status: "skipped", detail: "quiet hours" });
        else if (!deps.webhook) {
          if (!webhookDisabledLogged)
            logger.warn("webhooks are disabled (WEBHOOK_SECRET is not set); webhook notifications are skipped");
          webhookDisabledLogged = true;
          external.push({ channel: "webhook", status: "skipped", detail: "webhooks disabled (WEBHOOK_SECRET unset)" });
        } else if (!routing.webhookUrl)
          external.push({ channel: "webhook", status: "skipped", detail: "no webhook_url" });
        else {
          const sender = deps.webhook;
          const r = await deliverOnce(ctx.eventId, "webhook", n.userId, (onAttempt) =>
            sender.send({
              url: routing.webhookUrl,
              payload: webhookPayload(n, ctx.eventId),
              eventId: ctx.eventId,
              signal: deps.stopping,
              onAttempt,
            }),
          );
          external.push({ channel: "webhook", ...r });
        }
      }

      if (routing.channels.push) {
        const devices = store.pushSubscriptions(n.userId);
        if (quiet) external.push({ channel: "push", status: "skipped", detail: "quiet hours" });
        else if (devices.length === 0 && store.delivery(ctx.eventId, "push") === undefined)
          external.push({ channel: "push", status: "skipped", detail: "no push subscription" });
        else {
          const r = await deliverOnce(ctx.eventId, "push", n.userId, async (onAttempt) => {
            const out = await deps.push.send({
              subscriptions: devices,
              payload: pushPayload(n, ctx.eventId),
              topic: pushTopic(n.id),
              signal: deps.stopping,
              onAttempt,
            });
            // Gone at the push service (unsubscribed, expired): never sent to again.
            for (const id of out.expired) store.expirePushSubscription(id);
            if (out.expired.length > 0)
              logger.info({ userId: n.userId, expired: out.expired }, "expired push subscriptions removed");
            if (out.delivered.length > 0) return out;
            const why = [...out.failed.map((f) => f.detail), ...out.expired.map(() => "subscription expired")];
            throw new Error(`no device took the push: ${why.join("; ") || "no subscription"}`);
          });
          external.push({ channel: "push", ...r });
        }
      }

      const inApp = routing.channels.inApp || !external.some((e) => e.status === "sent");
      return { kind: "deliver", notification: n, inApp, external };
    },

    apply(event, ctx, plan) {
      const log = logger.child({ eventId: ctx.eventId, type: event.type, userId: event.userId });
      if (!plan || plan.kind === "drop") {
        log.info({ reason: plan?.kind === "drop" ? plan.reason : "no plan" }, "due event dropped");
        return;
      }
      const n = plan.notification;
      const now = clock();
      const sent = (channel: DeliveryChannel) =>
        appendEvent(
          store.db,
          notificationSent({
            userId: n.userId,
            notificationId: n.id,
            taskId: n.taskId,
            channel: CHANNEL[channel],
            sourceEventId: ctx.eventId,
            at: new Date(now),
          }),
          // No traceparent: appendEvent takes the active span's, this consumer's CONSUMER span.
        );

      if (plan.inApp) {
        const inserted = store.insert({
          id: n.id,
          userId: n.userId,
          sourceEventId: ctx.eventId,
          kind: n.kind,
          taskId: n.taskId,
          title: n.title,
          body: n.body,
          createTime: now,
        });
        if (inserted) {
          store.recordOutcome(
            { eventId: ctx.eventId, channel: "in_app", userId: n.userId, status: "sent", attempts: 1 },
            now,
          );
          sent("in_app");
          // better-sqlite3 commits synchronously when this transaction's function returns, so by
          // the next macrotask the row is committed, or gone after a rollback (then nothing is pushed).
          setImmediate(() => {
            const row = store.byId(n.id);
            if (row) deps.feed.publish(row);
          });
        }
      }
      for (const e of plan.external) {
        if (e.status === "sent") sent(e.channel);
        else if (e.status === "skipped")
          store.recordOutcome(
            { eventId: ctx.eventId, channel: e.channel, userId: n.userId, status: "skipped", detail: e.detail ?? null },
            now,
          );
      }
      log.info({ notificationId: n.id, inApp: plan.inApp, external: plan.external }, "notification delivered");
    },
  };
}

interface Due {
  kind: Kind;
  taskId: string;
  title: string;
  dueTime: number | undefined;
  timeZone: string;
}

/** The due event's payload; anything else on these subjects is a producer's bug (dead-lettered). */
function readDue(event: Envelope): Due {
  if (!event.userId) throw new Error(`${event.type} event has no user_id`);
  const p = event.payload;
  if (p.case === "reminderDue")
    return {
      kind: Kind.REMINDER,
      taskId: p.value.taskId,
      title: p.value.title,
      dueTime: p.value.dueTime ? timestampMs(p.value.dueTime) : undefined,
      timeZone: p.value.timeZone,
    };
  if (p.case === "taskDue")
    return {
      kind: Kind.DUE,
      taskId: p.value.taskId,
      title: p.value.title,
      dueTime: p.value.dueTime ? timestampMs(p.value.dueTime) : undefined,
      timeZone: p.value.timeZone,
    };
  throw new Error(`unexpected payload "${p.case ?? "none"}" on ${event.type}`);
}

/** Title and body, with the due time shown in `zone` ("" = UTC). */
function compose(event: Envelope, due: Due, zone: string): Composed {
  const name = due.title.trim() || "(untitled task)";
  const when = due.dueTime === undefined ? undefined : formatTime(due.dueTime, zone);
  const [title, body] =
    due.kind === Kind.REMINDER
      ? [`Reminder: ${name}`, when ? `"${name}" is due ${when}.` : `A reminder for "${name}".`]
      : [`Due now: ${name}`, when ? `"${name}" is due now (${when}).` : `"${name}" is due now.`];
  return {
    id: notificationIdFor(event.id),
    userId: event.userId,
    kind: due.kind,
    taskId: due.taskId,
    title,
    body,
    dueTime: due.dueTime,
    occurredAt: event.occurredAt ? timestampMs(event.occurredAt) : undefined,
  };
}

function formatTime(ms: number, zone: string): string {
  const opts: Intl.DateTimeFormatOptions = {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: zone || "UTC" }).format(ms);
  } catch {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: "UTC" }).format(ms);
  }
}

/** What the service worker shows (web/public/push-sw.js): small, the same on every attempt. */
function pushPayload(n: Composed, eventId: string) {
  return {
    type: n.kind === Kind.REMINDER ? "reminder.due" : "task.due",
    notification_id: n.id,
    event_id: eventId,
    task_id: n.taskId,
    title: n.title,
    body: n.body,
    url: "/notifications",
  };
}

/** RFC 8030 Topic: ≤ 32 base64url characters, one per notification. */
function pushTopic(notificationId: string): string {
  return createHash("sha256").update(notificationId).digest("base64url").slice(0, 32);
}

/**
 * The webhook's JSON body. It depends only on the event (not on the time of the attempt), so
 * every attempt and redelivery sends the same bytes under the same Idempotency-Key.
 */
function webhookPayload(n: Composed, eventId: string) {
  return {
    type: n.kind === Kind.REMINDER ? "reminder.due" : "task.due",
    notification_id: n.id,
    event_id: eventId,
    task_id: n.taskId,
    title: n.title,
    body: n.body,
    due_time: n.dueTime === undefined ? null : new Date(n.dueTime).toISOString(),
    occurred_at: n.occurredAt === undefined ? null : new Date(n.occurredAt).toISOString(),
  };
}
