import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { LiveFeed } from "./live-feed.js";
import type { StoredNotification } from "./notifications-store.js";

const note = (userId: string, id: string): StoredNotification => ({
  id,
  userId,
  sourceEventId: `ev-${id}`,
  kind: 1,
  taskId: "t",
  title: id,
  body: "",
  createTime: 0,
  readTime: null,
});

describe("LiveFeed", () => {
  it("gives a subscriber only its own user's notifications, in order, and returns when its signal aborts", async () => {
    const feed = new LiveFeed();
    const abort = new AbortController();
    const stream = feed.subscribe("a", abort.signal);
    const first = stream.next(); // runs the generator up to its first wait: subscribed
    expect(feed.watchers).toBe(1);
    feed.publish(note("b", "b1"));
    feed.publish(note("a", "a1"));
    feed.publish(note("a", "a2"));
    expect((await first).value?.id).toBe("a1");
    expect((await stream.next()).value?.id).toBe("a2");
    const pending = stream.next();
    abort.abort();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(feed.watchers).toBe(0);
  });

  it("ends a stream that falls too far behind with RESOURCE_EXHAUSTED instead of buffering without bound", async () => {
    const feed = new LiveFeed({ maxQueued: 2 });
    const stream = feed.subscribe("a", new AbortController().signal);
    const first = stream.next();
    for (const id of ["1", "2", "3", "4"]) feed.publish(note("a", id));
    expect((await first).value?.id).toBe("1");
    expect((await stream.next()).value?.id).toBe("2");
    const err = await stream.next().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(feed.watchers).toBe(0);
  });
});
