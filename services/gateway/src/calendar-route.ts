import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CalendarFeedInternalService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import type { GrpcClient, Logger } from "@taskmesh/platform";
import type { EdgeHttpRoute } from "@taskmesh/platform/edge";
import { clientAddress } from "./rate-limit.js";
import { type BucketSpec, TokenBuckets } from "./token-buckets.js";

/** `/calendar/<43 base64url characters>.ics`, the path TaskService.RotateCalendarFeed hands out. */
const FEED_PATH = /^\/calendar\/([A-Za-z0-9_-]{43})\.ics$/;
/** A Host header worth echoing into the events' links: host[:port], nothing else. */
const HOST = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/;

export interface CalendarRouteOptions {
  /** CalendarFeedInternalService on tasks, guarded by the tasks dependency policy. */
  feeds: GrpcClient<typeof CalendarFeedInternalService>;
  /** Requests per client address; undefined: no limit. */
  limit: BucketSpec | undefined;
  maxKeys: number;
  trustedProxyHops: number;
  /** Origin of the web app for the events' links. "": taken from the request's Host header. */
  publicOrigin: string;
  logger: Logger;
  /** Clock of the buckets, ms. Default performance.now. */
  now?: () => number;
}

/**
 * GET/HEAD /calendar/<secret>.ics: the user's due tasks as iCalendar, rendered by tasks. Any
 * other path under /calendar/ is 404 like an unknown or revoked secret. The answer carries an
 * ETag of its bytes (tasks renders an unchanged feed identically), so a calendar app's poll with
 * If-None-Match gets 304; `private` keeps shared caches from storing a per-user document.
 */
export function calendarRoute(opts: CalendarRouteOptions): EdgeHttpRoute {
  const buckets = opts.limit ? new TokenBuckets(opts.limit, { maxKeys: opts.maxKeys, now: opts.now }) : undefined;
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0] as string;
    if (!path.startsWith("/calendar/") || (req.method !== "GET" && req.method !== "HEAD")) return false;
    const head = req.method === "HEAD";
    const send = (status: number, headers: Record<string, string | number>, body = "") => {
      res.writeHead(status, { "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", ...headers });
      if (head) res.end();
      else res.end(body);
    };
    const headers = new Headers();
    const xff = req.headers["x-forwarded-for"];
    if (typeof xff === "string") headers.set("x-forwarded-for", xff);
    const address = clientAddress(req.socket?.remoteAddress ?? "", headers, opts.trustedProxyHops);
    const taken = buckets?.take(address);
    if (taken && !taken.allowed) {
      send(
        429,
        { "content-type": "text/plain; charset=utf-8", "retry-after": Math.ceil(taken.retryAfterMs / 1000) },
        "too many requests\n",
      );
      return true;
    }
    const secret = FEED_PATH.exec(path)?.[1];
    if (!secret) {
      send(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }, "not found\n");
      return true;
    }
    let calendar: string;
    try {
      ({ calendar } = await opts.feeds.renderCalendarFeed({
        secret,
        appOrigin: appOrigin(opts.publicOrigin, req.headers),
      }));
    } catch (e) {
      const err = ConnectError.from(e);
      if (err.code === Code.NotFound) {
        send(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }, "not found\n");
        return true;
      }
      // The secret stays out of the log: it is the feed's only credential.
      opts.logger.warn({ code: Code[err.code], err: err.rawMessage }, "calendar feed failed");
      const unavailable = [Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted].includes(err.code);
      send(
        unavailable ? 503 : 500,
        {
          "content-type": "text/plain; charset=utf-8",
          "cache-control": "no-store",
          ...(unavailable ? { "retry-after": 30 } : {}),
        },
        unavailable ? "calendar temporarily unavailable, retry later\n" : "calendar feed failed\n",
      );
      return true;
    }
    const body = Buffer.from(calendar, "utf8");
    const etag = `"${createHash("sha256").update(body).digest("base64url")}"`;
    const cache = { etag, "cache-control": "private, max-age=300" };
    if (ifNoneMatch(req.headers["if-none-match"], etag)) {
      send(304, cache);
      return true;
    }
    res.writeHead(200, {
      ...cache,
      "content-type": "text/calendar; charset=utf-8",
      "content-length": body.length,
      "content-disposition": 'inline; filename="taskmesh.ics"',
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    });
    if (head) res.end();
    else res.end(body);
    return true;
  };
}

/** RFC 9110 13.1.2: a list of entity tags (weak ones compare weakly) or "*". */
function ifNoneMatch(header: string | string[] | undefined, etag: string): boolean {
  if (typeof header !== "string") return false;
  return header.split(",").some((t) => {
    const tag = t.trim();
    return tag === "*" || tag.replace(/^W\//, "") === etag;
  });
}

function appOrigin(configured: string, headers: Record<string, string | string[] | undefined>): string {
  if (configured) return configured;
  const host = headers[":authority"] ?? headers.host;
  return typeof host === "string" && HOST.test(host) ? `http://${host}` : "";
}
