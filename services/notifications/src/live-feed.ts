import { Code, ConnectError } from "@connectrpc/connect";
import type { StoredNotification } from "./notifications-store.js";

type Listener = (n: StoredNotification) => void;

/**
 * In-process fan-out of new in-app notifications to WatchNotifications streams, by user. It is fed
 * after the inbox transaction commits (never a notification that could still roll back), and a
 * stream only ever subscribes to its caller's own user id.
 *
 * One process only: with several replicas a watcher sees the notifications made by the replica it
 * is connected to (the inbox itself is per replica's database anyway). Missed notifications are
 * not replayed: a client lists first, then watches.
 */
export class LiveFeed {
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Notifications one slow stream may have waiting before it is ended with RESOURCE_EXHAUSTED. */
  readonly #maxQueued: number;

  constructor(opts: { maxQueued?: number } = {}) {
    this.#maxQueued = opts.maxQueued ?? 1000;
  }

  /** Open watch streams (all users). */
  get watchers(): number {
    let n = 0;
    for (const s of this.#listeners.values()) n += s.size;
    return n;
  }

  publish(n: StoredNotification): void {
    for (const l of this.#listeners.get(n.userId) ?? []) l(n);
  }

  /** `userId`'s new notifications as they are published, until `signal` aborts (then it returns). */
  async *subscribe(userId: string, signal: AbortSignal): AsyncGenerator<StoredNotification> {
    const queue: StoredNotification[] = [];
    let wake: (() => void) | undefined;
    let overflow = false;
    const listener: Listener = (n) => {
      if (queue.length >= this.#maxQueued) overflow = true;
      else queue.push(n);
      wake?.();
    };
    const onAbort = () => wake?.();
    let set = this.#listeners.get(userId);
    if (!set) {
      set = new Set();
      this.#listeners.set(userId, set);
    }
    set.add(listener);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (overflow)
          throw new ConnectError(
            "too many notifications waiting for this stream; list them and watch again",
            Code.ResourceExhausted,
          );
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(userId) === set) this.#listeners.delete(userId);
    }
  }
}
