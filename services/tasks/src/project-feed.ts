import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { type Db, requireUser } from "@taskmesh/platform";

export type ChangeKind =
  | "task_created"
  | "task_updated"
  | "task_completed"
  | "task_reopened"
  | "task_deleted"
  | "task_moved"
  | "project_updated"
  | "project_deleted"
  | "member_changed";

/** One committed change in a project, as WatchProject streams it (no task content). */
export interface ProjectChange {
  projectId: string;
  kind: ChangeKind;
  taskId: string;
  /** The task's version after the change (a deletion's is its last + 1); 0 without a task. */
  taskVersion: number;
  /** Who made it: the caller, filled in at publish time; until then the event's user (the creator). */
  actorId: string;
  memberUserId: string;
  time: number;
}

/**
 * Changes noted inside the transactions of the store, per connection, until the service takes
 * them after the commit (takeChanges). A change is noted next to its outbox event, so the two
 * agree; one rolled back is discarded by the caller, which takes the list whatever happens.
 */
const pending = new WeakMap<Db, ProjectChange[]>();

export function noteChange(
  db: Db,
  change: Omit<ProjectChange, "memberUserId" | "taskVersion"> & Partial<ProjectChange>,
) {
  let list = pending.get(db);
  if (!list) {
    list = [];
    pending.set(db, list);
  }
  list.push({ memberUserId: "", taskVersion: 0, ...change });
}

/** The changes noted since the last take (and forgets them). */
export function takeChanges(db: Db): ProjectChange[] {
  const list = pending.get(db);
  if (!list || list.length === 0) return [];
  pending.delete(db);
  return list;
}

type Listener = (c: ProjectChange) => void;

/** Each call's changes, from its synchronous part to its answer. */
const pendingOfCall = new WeakMap<HandlerContext, ProjectChange[]>();

/**
 * In-process fan-out of committed project changes to WatchProject streams, by project id. Fed by
 * the service after a call's transaction has committed (server.ts), never a change that could
 * still roll back. The tasks service runs as one process per database (SQLite, one writer), so
 * every change of a project passes through this process; with several replicas on one database
 * this would not hold and a broker fan-out would be needed. Missed changes are not replayed: a
 * client lists first, then watches, and lists again after a reconnect.
 */
export class ProjectFeed {
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Changes one slow stream may have waiting before it is ended with RESOURCE_EXHAUSTED. */
  readonly #maxQueued: number;

  constructor(opts: { maxQueued?: number } = {}) {
    this.#maxQueued = opts.maxQueued ?? 1000;
  }

  /** Open watch streams (all projects). */
  get watchers(): number {
    let n = 0;
    for (const s of this.#listeners.values()) n += s.size;
    return n;
  }

  publish(c: ProjectChange): void {
    for (const l of this.#listeners.get(c.projectId) ?? []) l(c);
  }

  /** The project's changes as they are published, until `signal` aborts (then it returns). */
  async *subscribe(projectId: string, signal: AbortSignal): AsyncGenerator<ProjectChange> {
    const queue: ProjectChange[] = [];
    let wake: (() => void) | undefined;
    let overflow = false;
    const listener: Listener = (c) => {
      if (queue.length >= this.#maxQueued) overflow = true;
      else queue.push(c);
      wake?.();
    };
    const onAbort = () => wake?.();
    let set = this.#listeners.get(projectId);
    if (!set) {
      set = new Set();
      this.#listeners.set(projectId, set);
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
            "too many changes waiting for this stream; list the project's tasks and watch again",
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
      if (set.size === 0 && this.#listeners.get(projectId) === set) this.#listeners.delete(projectId);
    }
  }
}

/**
 * `impl` with each unary method publishing the changes its call committed to `feed`, the caller
 * as their actor (internal calls keep the event's user: a recurring task's creator). The store's
 * writes are synchronous (better-sqlite3) and no handler awaits before them, so the changes noted
 * between the call and its return are this call's, committed; if the call failed they are
 * dropped (rolled back). Server streams pass through.
 */
export function publishingChanges<T extends object>(impl: T, db: Db, feed: ProjectFeed): T {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(impl)) {
    if (typeof fn !== "function" || fn.constructor.name === "AsyncGeneratorFunction") {
      out[name] = fn;
      continue;
    }
    out[name] = (req: unknown, ctx: HandlerContext) => {
      takeChanges(db); // anything left from work outside a call is not this call's
      let result: unknown;
      try {
        result = fn.call(impl, req, ctx);
      } finally {
        pendingOfCall.set(ctx, takeChanges(db));
      }
      return Promise.resolve(result).then((res) => {
        const actor = callerOf(ctx);
        for (const c of pendingOfCall.get(ctx) ?? []) feed.publish(actor ? { ...c, actorId: actor } : c);
        return res;
      });
    };
  }
  return out as T;
}

/**
 * Publishes what `fn` commits outside a call (the user.deleted consumer: a purge ends the deleted
 * user's streams and tells the members of the projects it changed). `fn` runs inside the
 * consumer's inbox transaction, so the changes go out on the next turn, after its commit.
 */
export function publishingAfter<R>(db: Db, feed: ProjectFeed, fn: () => R): R {
  takeChanges(db);
  const r = fn();
  const changes = takeChanges(db);
  if (changes.length > 0)
    setImmediate(() => {
      for (const c of changes) feed.publish(c);
    });
  return r;
}

function callerOf(ctx: HandlerContext): string | undefined {
  try {
    return requireUser(ctx).userId;
  } catch {
    return undefined;
  }
}
