import { Code, ConnectError } from "@connectrpc/connect";
import type { ProjectRecord } from "./project-record.js";
import { covers, type Role } from "./project-record.js";
import type { TaskRecord, TasksStore } from "./tasks-store.js";

/** What each role lets a member do, for PERMISSION_DENIED messages. */
const NEEDED: Record<Role, string> = {
  viewer: "a role in the project",
  editor: "the editor or owner role in the project",
  owner: "the owner role in the project",
};

/** The caller's role in the project, or undefined for a stranger. */
export function roleIn(store: TasksStore, p: ProjectRecord, userId: string): Role | undefined {
  if (p.userId === userId) return "owner";
  return store.sharing.member(p.id, userId)?.role;
}

/**
 * The project if the caller holds `need` in it. A stranger gets NOT_FOUND exactly like a missing
 * id (no existence oracle); a member lacking the role gets PERMISSION_DENIED saying what is needed.
 * Synchronous with the write that follows (better-sqlite3, no await between), so a membership
 * cannot change in between.
 */
export function projectAccess(
  store: TasksStore,
  userId: string,
  projectId: string,
  need: Role,
  field = "project_id",
  what = "this",
): { project: ProjectRecord; role: Role } {
  const id = projectId.toLowerCase();
  const p = store.projects.getAny(id);
  const role = p && roleIn(store, p, userId);
  if (!p || !role) throw new ConnectError(`${field}: project ${id} not found`, Code.NotFound);
  if (!covers(role, need))
    throw new ConnectError(`${what} needs ${NEEDED[need]}; you are a ${role}`, Code.PermissionDenied);
  return { project: p, role };
}

/**
 * `assigneeId` if it may be assigned tasks of the project (its owner or an editor), else
 * INVALID_ARGUMENT naming `field`; null stays null (unassigned).
 */
export function checkAssignee(
  store: TasksStore,
  projectId: string,
  assigneeId: string | null,
  field: string,
): string | null {
  if (assigneeId === null) return null;
  if (!canBeAssigned(store, projectId, assigneeId))
    throw new ConnectError(`${field}: must be the project's owner or one of its editors`, Code.InvalidArgument);
  return assigneeId;
}

/** True when `userId` is the project's owner or an editor of it. */
export function canBeAssigned(store: TasksStore, projectId: string, userId: string): boolean {
  const p = store.projects.getAny(projectId);
  const role = p && roleIn(store, p, userId);
  return role !== undefined && covers(role, "editor");
}

/** The task if the caller holds `need` in its project; errors as projectAccess, naming the task. */
export function taskAccess(
  store: TasksStore,
  userId: string,
  taskId: string,
  need: Role,
  field = "task_id",
  what = "this",
): TaskRecord {
  const id = taskId.toLowerCase();
  const t = store.getAny(id);
  const p = t && store.projects.getAny(t.projectId);
  const role = p && roleIn(store, p, userId);
  if (!t || !role)
    throw new ConnectError(`${field === "task_id" ? "" : `${field}: `}task ${id} not found`, Code.NotFound);
  if (!covers(role, need))
    throw new ConnectError(`${what} needs ${NEEDED[need]}; you are a ${role}`, Code.PermissionDenied);
  return t;
}
