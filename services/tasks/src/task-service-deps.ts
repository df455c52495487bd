import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { requireUser, type WalSync } from "@taskmesh/platform";
import type { ProjectFeed } from "./project-feed.js";
import type { TasksStore } from "./tasks-store.js";

/** What TaskService and the services beside it (sharing, calendar feed, internal) are built with. */
export interface TaskServiceDeps {
  store: TasksStore;
  /**
   * CreateTask commits through it and answers after its sync (group commit: concurrent creates
   * share one fsync, off the event loop); the relay publishes only what it has synced.
   */
  walSync: WalSync;
  /** Most tasks one user may hold; a create beyond it is RESOURCE_EXHAUSTED. */
  maxTasksPerUser: number;
  /** Most projects one user may hold, the Inbox included; beyond it CreateProject is RESOURCE_EXHAUSTED. */
  maxProjectsPerUser: number;
  /** Most labels one user may hold; beyond it CreateLabel is RESOURCE_EXHAUSTED. */
  maxLabelsPerUser: number;
  /** Current time in epoch ms. Default Date.now. */
  clock?: () => number;
  /** WatchProject's fan-out, fed after each commit (server.ts, publishChanges). Default: one nobody feeds. */
  feed?: ProjectFeed;
}

/**
 * The caller's user id (requireUser), refused once that user's account has been deleted: tokens
 * are stateless and outlive the account by up to their TTL, and a task written with one then
 * would belong to nobody and never be purged.
 */
export function liveUser(store: TasksStore, ctx: HandlerContext): string {
  const { userId } = requireUser(ctx);
  if (store.isDeletedUser(userId)) {
    throw new ConnectError("the account of this token has been deleted", Code.Unauthenticated);
  }
  return userId;
}
