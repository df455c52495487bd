import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type {
  NotificationInternalService,
  NotificationSchema,
  NotificationService,
} from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { type Logger, requireService, requireUser } from "@taskmesh/platform";
import type { LiveFeed } from "./live-feed.js";
import type { Cursor, NotificationsStore, StoredNotification } from "./notifications-store.js";

const DEFAULT_PAGE_SIZE = 50;

export function toProto(n: StoredNotification): MessageInitShape<typeof NotificationSchema> {
  return {
    id: n.id,
    kind: n.kind,
    taskId: n.taskId,
    title: n.title,
    body: n.body,
    createTime: timestampFromMs(n.createTime),
    ...(n.readTime === null ? {} : { readTime: timestampFromMs(n.readTime) }),
  };
}

/** Opaque page token: the last row of the previous page (create time and id), base64url. */
function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.createTime}.${c.id}`).toString("base64url");
}

function decodeCursor(token: string): Cursor {
  const m = /^(\d{1,16})\.([0-9a-f-]{36})$/.exec(Buffer.from(token, "base64url").toString());
  if (!m?.[1] || !m[2])
    throw new ConnectError("page_token is not a token returned by ListNotifications", Code.InvalidArgument);
  return { createTime: Number(m[1]), id: m[2] };
}

/**
 * NotificationService: the caller's own inbox. The user id comes only from the verified token
 * (requireUser); no request field names a user, so one user can never read or change another's.
 * The Web Push methods are in push-service.ts.
 */
export function notificationService(deps: {
  store: NotificationsStore;
  feed: LiveFeed;
  clock: () => number;
  logger: Logger;
}): Pick<ServiceImpl<typeof NotificationService>, "listNotifications" | "markRead" | "watchNotifications"> {
  const { store, feed, clock, logger } = deps;
  return {
    listNotifications(req, ctx) {
      const { userId } = requireUser(ctx);
      const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
      const after = req.pageToken ? decodeCursor(req.pageToken) : undefined;
      // One row more than asked tells whether another page exists.
      const rows = store.page(userId, { unreadOnly: req.unreadOnly, limit: pageSize + 1, after });
      const page = rows.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        notifications: page.map(toProto),
        nextPageToken: rows.length > pageSize && last ? encodeCursor(last) : "",
        unreadCount: BigInt(store.unreadCount(userId)),
      };
    },

    markRead(req, ctx) {
      const { userId } = requireUser(ctx);
      const { notOwned } = store.markRead(userId, req.notificationIds, clock());
      // Another user's id and an id that does not exist answer alike: nothing tells them apart.
      if (notOwned.length > 0)
        throw new ConnectError(`notifications not found: ${notOwned.join(", ")}; nothing was marked`, Code.NotFound);
      return { unreadCount: BigInt(store.unreadCount(userId)) };
    },

    async *watchNotifications(_req, ctx) {
      const { userId } = requireUser(ctx);
      logger.debug({ userId }, "watch stream opened");
      try {
        // ctx.signal aborts when the client cancels or the server shuts down: the stream then ends.
        for await (const n of feed.subscribe(userId, ctx.signal)) yield { notification: toProto(n) };
      } finally {
        logger.debug({ userId }, "watch stream closed");
      }
    },
  };
}

/** NotificationInternalService: mesh-only, service token required. */
export function notificationInternalService(deps: {
  store: NotificationsStore;
  logger: Logger;
}): ServiceImpl<typeof NotificationInternalService> {
  return {
    purgeUser(req, ctx) {
      const caller = requireService(ctx);
      const deleted = deps.store.purgeUser(req.userId);
      deps.logger.info({ userId: req.userId, deleted, caller }, "user's inbox and delivery log purged");
      return { deletedCount: BigInt(deleted) };
    },
  };
}
