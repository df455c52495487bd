import {
  type Db,
  inboxMigration,
  type Migration,
  openDatabase,
  outboxMigration,
  outboxStreamSeqMigration,
} from "@taskmesh/platform";
import type { Statement } from "better-sqlite3";

/**
 * notifications: the in-app inbox, one row per source event (reminder.due / task.due), so a
 *   redelivered event cannot make a second row (UNIQUE source_event_id).
 * deliveries: the delivery log, one row per (source event, channel): what was done for each
 *   channel, how many attempts it took, and the last error. Email and webhook rows are written
 *   outside the inbox transaction, before and after each send, so a redelivery after a crash
 *   does not send again what is already recorded as sent.
 */
const SCHEMA_SQL = `
CREATE TABLE notifications (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  source_event_id TEXT NOT NULL UNIQUE,
  kind INTEGER NOT NULL,
  task_id TEXT NOT NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  read_time INTEGER
);
CREATE INDEX notifications_by_user ON notifications(user_id, create_time DESC, id DESC);
CREATE INDEX notifications_unread ON notifications(user_id) WHERE read_time IS NULL;

CREATE TABLE deliveries (
  event_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  detail TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (event_id, channel)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_user ON deliveries(user_id);
`;

export const MIGRATIONS: Migration[] = [
  { version: 1, name: "notifications and delivery log", sql: SCHEMA_SQL },
  inboxMigration(2),
  outboxMigration(3),
  outboxStreamSeqMigration(4),
  {
    version: 5,
    name: "push subscriptions",
    // A device's Web Push subscription, per user: the same browser signed in as two users holds
    // one row for each, so no user's registration touches another's.
    sql: `
      CREATE TABLE push_subscriptions (
        id          TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        p256dh      TEXT NOT NULL,
        auth        TEXT NOT NULL,
        device_name TEXT NOT NULL DEFAULT '',
        create_time INTEGER NOT NULL,
        UNIQUE (user_id, endpoint)
      ) STRICT;
    `,
  },
];

/** A device's Web Push subscription as stored (keys base64url, as the browser gives them). */
export interface StoredPushSubscription {
  id: string;
  userId: string;
  endpoint: string;
  p256dh: string;
  auth: string;
  deviceName: string;
  createTime: number;
}

/** A notification as stored; times in ms since the epoch. */
export interface StoredNotification {
  id: string;
  userId: string;
  sourceEventId: string;
  kind: number;
  taskId: string;
  title: string;
  body: string;
  createTime: number;
  readTime: number | null;
}

export type DeliveryChannel = "in_app" | "email" | "webhook" | "push";

/**
 * sending: an attempt is (or was, when the process died) under way; a redelivery sends again with
 *   the same idempotency key. sent: done. failed: given up (permanent error or attempts used up).
 * skipped: not sent on purpose (quiet hours, channel disabled); `detail` says why.
 */
export type DeliveryStatus = "sending" | "sent" | "failed" | "skipped";

export interface Delivery {
  eventId: string;
  channel: DeliveryChannel;
  userId: string;
  status: DeliveryStatus;
  attempts: number;
  detail: string | null;
}

/** Keyset cursor of ListNotifications: the last row of the page before. */
export interface Cursor {
  createTime: number;
  id: string;
}

interface Row {
  id: string;
  user_id: string;
  source_event_id: string;
  kind: number;
  task_id: string;
  title: string;
  body: string;
  create_time: number;
  read_time: number | null;
}

const toNotification = (r: Row): StoredNotification => ({
  id: r.id,
  userId: r.user_id,
  sourceEventId: r.source_event_id,
  kind: r.kind,
  taskId: r.task_id,
  title: r.title,
  body: r.body,
  createTime: r.create_time,
  readTime: r.read_time,
});

interface PushRow {
  id: string;
  user_id: string;
  endpoint: string;
  p256dh: string;
  auth: string;
  device_name: string;
  create_time: number;
}

const toPush = (r: PushRow): StoredPushSubscription => ({
  id: r.id,
  userId: r.user_id,
  endpoint: r.endpoint,
  p256dh: r.p256dh,
  auth: r.auth,
  deviceName: r.device_name,
  createTime: r.create_time,
});

/** SQL of the notifications database; every query is scoped to one user. */
export class NotificationsStore {
  readonly db: Db;
  readonly #insert: Statement;
  readonly #byId: Statement;
  readonly #page: Statement;
  readonly #unreadCount: Statement;
  readonly #owned: Statement;
  readonly #markRead: Statement;
  readonly #purgeNotifications: Statement;
  readonly #purgeDeliveries: Statement;
  readonly #delivery: Statement;
  readonly #upsertDelivery: Statement;
  readonly #attempt: Statement;
  readonly #ping: Statement;
  readonly #pushUpsert: Statement;
  readonly #pushByEndpoint: Statement;
  readonly #pushList: Statement;
  readonly #pushCount: Statement;
  readonly #pushDelete: Statement;
  readonly #pushDeleteById: Statement;
  readonly #purgePush: Statement;

  static open(path: string): NotificationsStore {
    return new NotificationsStore(openDatabase(path, MIGRATIONS));
  }

  constructor(db: Db) {
    this.db = db;
    this.#insert = db.prepare(
      `INSERT INTO notifications (id, user_id, source_event_id, kind, task_id, title, body, create_time, read_time)
       VALUES (@id, @userId, @sourceEventId, @kind, @taskId, @title, @body, @createTime, NULL)
       ON CONFLICT DO NOTHING`,
    );
    this.#byId = db.prepare("SELECT * FROM notifications WHERE id = ?");
    this.#page = db.prepare(
      `SELECT * FROM notifications
       WHERE user_id = @userId AND (@unreadOnly = 0 OR read_time IS NULL)
         AND (create_time < @t OR (create_time = @t AND id < @id))
       ORDER BY create_time DESC, id DESC LIMIT @limit`,
    );
    this.#unreadCount = db
      .prepare("SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_time IS NULL")
      .pluck();
    this.#owned = db.prepare("SELECT 1 FROM notifications WHERE id = ? AND user_id = ?").pluck();
    this.#markRead = db.prepare(
      "UPDATE notifications SET read_time = ? WHERE id = ? AND user_id = ? AND read_time IS NULL",
    );
    this.#purgeNotifications = db.prepare("DELETE FROM notifications WHERE user_id = ?");
    this.#purgeDeliveries = db.prepare("DELETE FROM deliveries WHERE user_id = ?");
    this.#delivery = db.prepare("SELECT * FROM deliveries WHERE event_id = ? AND channel = ?");
    this.#upsertDelivery = db.prepare(
      `INSERT INTO deliveries (event_id, channel, user_id, status, attempts, detail, updated_at)
       VALUES (@eventId, @channel, @userId, @status, @attempts, @detail, @now)
       ON CONFLICT (event_id, channel) DO UPDATE SET status = excluded.status, detail = excluded.detail,
         attempts = MAX(deliveries.attempts, excluded.attempts), updated_at = excluded.updated_at`,
    );
    this.#attempt = db.prepare(
      `INSERT INTO deliveries (event_id, channel, user_id, status, attempts, detail, updated_at)
       VALUES (?, ?, ?, 'sending', 1, NULL, ?)
       ON CONFLICT (event_id, channel) DO UPDATE SET status = 'sending', attempts = deliveries.attempts + 1,
         updated_at = excluded.updated_at
       RETURNING attempts`,
    );
    this.#ping = db.prepare("SELECT 1").pluck();
    this.#pushUpsert = db.prepare(
      `INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, device_name, create_time)
       VALUES (@id, @userId, @endpoint, @p256dh, @auth, @deviceName, @createTime)
       ON CONFLICT (user_id, endpoint) DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth,
         device_name = excluded.device_name`,
    );
    this.#pushByEndpoint = db.prepare("SELECT * FROM push_subscriptions WHERE user_id = ? AND endpoint = ?");
    this.#pushList = db.prepare("SELECT * FROM push_subscriptions WHERE user_id = ? ORDER BY create_time DESC, id");
    this.#pushCount = db.prepare("SELECT count(*) FROM push_subscriptions WHERE user_id = ?").pluck();
    this.#pushDelete = db.prepare("DELETE FROM push_subscriptions WHERE id = ? AND user_id = ?");
    this.#pushDeleteById = db.prepare("DELETE FROM push_subscriptions WHERE id = ?");
    this.#purgePush = db.prepare("DELETE FROM push_subscriptions WHERE user_id = ?");
  }

  /**
   * Adds a device's subscription, or replaces the keys and name of the user's subscription with
   * the same endpoint (the browser re-subscribed). "limit" when the user already has `max` others.
   */
  savePushSubscription(s: StoredPushSubscription, max: number): StoredPushSubscription | "limit" {
    return this.db.transaction(() => {
      const existing = this.#pushByEndpoint.get(s.userId, s.endpoint) as PushRow | undefined;
      if (!existing && (this.#pushCount.get(s.userId) as number) >= max) return "limit" as const;
      this.#pushUpsert.run(s);
      return toPush(this.#pushByEndpoint.get(s.userId, s.endpoint) as PushRow);
    })();
  }

  /** The user's subscriptions, newest first. */
  pushSubscriptions(userId: string): StoredPushSubscription[] {
    return (this.#pushList.all(userId) as PushRow[]).map(toPush);
  }

  /** True when the user's subscription `id` existed and is gone. */
  deletePushSubscription(userId: string, id: string): boolean {
    return this.#pushDelete.run(id, userId).changes > 0;
  }

  /** Removes a subscription the push service says is gone (404/410). */
  expirePushSubscription(id: string): void {
    this.#pushDeleteById.run(id);
  }

  /** Inserts the in-app notification of a source event; false when that event already has one. */
  insert(n: Omit<StoredNotification, "readTime">): boolean {
    return this.#insert.run(n).changes === 1;
  }

  byId(id: string): StoredNotification | undefined {
    const r = this.#byId.get(id) as Row | undefined;
    return r && toNotification(r);
  }

  /** One page, newest first, after `cursor` (exclusive). */
  page(userId: string, opts: { unreadOnly: boolean; limit: number; after?: Cursor | undefined }): StoredNotification[] {
    const rows = this.#page.all({
      userId,
      unreadOnly: opts.unreadOnly ? 1 : 0,
      t: opts.after?.createTime ?? Number.MAX_SAFE_INTEGER,
      // "\uffff" sorts after every UUID, so the first page starts at the newest row.
      id: opts.after?.id ?? "\uffff",
      limit: opts.limit,
    }) as Row[];
    return rows.map(toNotification);
  }

  unreadCount(userId: string): number {
    return this.#unreadCount.get(userId) as number;
  }

  /**
   * Marks the caller's notifications read, all or nothing: the ids that are not `userId`'s are
   * returned and nothing is changed. Already-read ones keep their first read time.
   */
  markRead(userId: string, ids: readonly string[], now: number): { notOwned: string[] } {
    return this.db.transaction(() => {
      const notOwned = ids.filter((id) => !this.#owned.get(id, userId));
      if (notOwned.length > 0) return { notOwned };
      for (const id of ids) this.#markRead.run(now, id, userId);
      return { notOwned };
    })();
  }

  /** Drops a user's inbox, delivery log and push subscriptions; returns the number of notifications deleted. */
  purgeUser(userId: string): number {
    return this.db.transaction(() => {
      const n = this.#purgeNotifications.run(userId).changes;
      this.#purgeDeliveries.run(userId);
      this.#purgePush.run(userId);
      return n;
    })();
  }

  delivery(eventId: string, channel: DeliveryChannel): Delivery | undefined {
    const r = this.#delivery.get(eventId, channel) as
      | {
          event_id: string;
          channel: DeliveryChannel;
          user_id: string;
          status: DeliveryStatus;
          attempts: number;
          detail: string | null;
        }
      | undefined;
    return (
      r && {
        eventId: r.event_id,
        channel: r.channel,
        userId: r.user_id,
        status: r.status,
        attempts: r.attempts,
        detail: r.detail,
      }
    );
  }

  /** Records, before an attempt is made, that it is being made; returns the attempt's number. */
  recordAttempt(eventId: string, channel: DeliveryChannel, userId: string, now: number): number {
    return (this.#attempt.get(eventId, channel, userId, now) as { attempts: number }).attempts;
  }

  /** Records a delivery's outcome (attempts never go down). */
  recordOutcome(
    d: {
      eventId: string;
      channel: DeliveryChannel;
      userId: string;
      status: DeliveryStatus;
      detail?: string | null;
      attempts?: number;
    },
    now: number,
  ): void {
    this.#upsertDelivery.run({
      eventId: d.eventId,
      channel: d.channel,
      userId: d.userId,
      status: d.status,
      attempts: d.attempts ?? 0,
      detail: d.detail ?? null,
      now,
    });
  }

  ping(): boolean {
    return this.#ping.get() === 1;
  }

  close(): void {
    this.db.close();
  }
}
