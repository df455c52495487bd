import { createECDH, randomUUID } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { NotificationService } from "@taskmesh/gen/taskmesh/notifications/v1/notifications_pb";
import { type OutboundPolicy, requireUser } from "@taskmesh/platform";
import type { NotificationsStore, StoredPushSubscription } from "./notifications-store.js";
import { refusedEndpoint } from "./push-sender.js";

/** Devices one user may register; a browser re-subscribing replaces its own row. */
export const MAX_PUSH_SUBSCRIPTIONS = 20;

const toProto = (s: StoredPushSubscription) => ({
  id: s.id,
  endpoint: s.endpoint,
  deviceName: s.deviceName,
  createTime: timestampFromMs(s.createTime),
});

/** The Web Push methods of NotificationService, on the caller's own subscriptions only. */
export function pushMethods(deps: {
  store: NotificationsStore;
  vapidPublicKey: string;
  policy: OutboundPolicy | undefined;
  clock: () => number;
}): Pick<
  ServiceImpl<typeof NotificationService>,
  "getPushConfig" | "registerPushSubscription" | "listPushSubscriptions" | "deletePushSubscription"
> {
  const { store, clock } = deps;
  return {
    getPushConfig(_req, ctx) {
      requireUser(ctx);
      return { vapidPublicKey: deps.vapidPublicKey };
    },

    registerPushSubscription(req, ctx) {
      const { userId } = requireUser(ctx);
      // The contract checked the form; these need code: scheme and address (SSRF), key lengths.
      const why = refusedEndpoint(req.endpoint, deps.policy);
      if (why) throw new ConnectError(`endpoint ${why}`, Code.InvalidArgument);
      if (!isP256Point(Buffer.from(req.p256dh, "base64url")))
        throw new ConnectError("p256dh must be an uncompressed P-256 public key (65 bytes)", Code.InvalidArgument);
      if (Buffer.from(req.auth, "base64url").length !== 16)
        throw new ConnectError("auth must be a 16-byte secret", Code.InvalidArgument);
      const saved = store.savePushSubscription(
        {
          id: randomUUID(),
          userId,
          endpoint: req.endpoint,
          p256dh: req.p256dh,
          auth: req.auth,
          deviceName: req.deviceName.trim(),
          createTime: clock(),
        },
        MAX_PUSH_SUBSCRIPTIONS,
      );
      if (saved === "limit")
        throw new ConnectError(
          `push subscription limit reached: at most ${MAX_PUSH_SUBSCRIPTIONS} devices; delete one first`,
          Code.ResourceExhausted,
        );
      return { subscription: toProto(saved) };
    },

    listPushSubscriptions(_req, ctx) {
      const { userId } = requireUser(ctx);
      return { subscriptions: store.pushSubscriptions(userId).map(toProto) };
    },

    deletePushSubscription(req, ctx) {
      const { userId } = requireUser(ctx);
      // Another user's id and a missing one answer alike.
      if (!store.deletePushSubscription(userId, req.subscriptionId.toLowerCase()))
        throw new ConnectError(`push subscription ${req.subscriptionId} not found`, Code.NotFound);
      return {};
    },
  };
}

/** An uncompressed point on P-256: anything else could never be encrypted to (RFC 8291 3.1). */
function isP256Point(key: Buffer): boolean {
  if (key.length !== 65 || key[0] !== 4) return false;
  try {
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(PROBE_KEY);
    ecdh.computeSecret(key);
    return true;
  } catch {
    return false;
  }
}

/** A fixed private key for the check above (its shared secrets are thrown away). */
const PROBE_KEY = Buffer.alloc(32, 1);
