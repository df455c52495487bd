import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ProjectRole } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import type { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { userEmail } from "@taskmesh/platform";
import { projectAccess } from "./access.js";
import { type MemberRole, toInvitation, toMember, toProject } from "./project-record.js";
import { liveUser, type TaskServiceDeps } from "./task-service-deps.js";

type SharingMethods = Pick<
  ServiceImpl<typeof TaskService>,
  | "inviteToProject"
  | "listInvitations"
  | "acceptInvitation"
  | "declineInvitation"
  | "listMembers"
  | "updateMember"
  | "removeMember"
>;

/**
 * Sharing a project by email. Invitations are matched by the `email` claim of the caller's token
 * (userEmail), so an invitation is accepted by whoever holds an account with that email; a
 * changed email applies from the next token. Someone else's invitation is NOT_FOUND.
 */
export function sharingMethods(deps: TaskServiceDeps): SharingMethods {
  const { store } = deps;
  const now = deps.clock ?? Date.now;
  return {
    async inviteToProject(req, ctx) {
      const userId = liveUser(store, ctx);
      const { project } = projectAccess(store, userId, req.projectId, "owner", "project_id", "inviting members");
      const inv = store.sharing.invite(project, req.email.toLowerCase(), memberRole(req.role), userEmail(ctx), now());
      return { invitation: toInvitation(inv) };
    },

    async listInvitations(_req, ctx) {
      liveUser(store, ctx);
      return { invitations: store.sharing.invitationsFor(userEmail(ctx)).map(toInvitation) };
    },

    async acceptInvitation(req, ctx) {
      const userId = liveUser(store, ctx);
      const inv = invitation(req.invitationId, userEmail(ctx));
      const owner = store.projects.getAny(inv.projectId);
      if (!owner) throw new ConnectError(`invitation ${req.invitationId} not found`, Code.NotFound);
      const m = store.sharing.accept(inv, owner, userId, now());
      return { project: toProject(owner, m.role) };
    },

    async declineInvitation(req, ctx) {
      liveUser(store, ctx);
      store.sharing.decline(invitation(req.invitationId, userEmail(ctx)).id);
      return {};
    },

    async listMembers(req, ctx) {
      const userId = liveUser(store, ctx);
      const { project } = projectAccess(store, userId, req.projectId, "viewer");
      const owner = {
        projectId: project.id,
        userId: project.userId,
        email: store.sharing.ownerEmail(project.id),
        role: "owner" as const,
        joinTime: project.createTime,
      };
      return { members: [owner, ...store.sharing.members(project.id)].map(toMember) };
    },

    async updateMember(req, ctx) {
      const userId = liveUser(store, ctx);
      const { project } = projectAccess(store, userId, req.projectId, "owner", "project_id", "changing roles");
      const m = member(project.id, req.userId);
      const role = memberRole(req.role);
      // A viewer cannot be assigned tasks: the project's tasks assigned to them are unassigned.
      const next = store.atomically(() => {
        const changed = store.sharing.setRole(project, m, role, now());
        if (role === "viewer") store.unassign(m.userId, project.id, now());
        return changed;
      });
      return { member: toMember(next) };
    },

    /** The owner removes anyone but themselves; a member may remove only themselves (leave). */
    async removeMember(req, ctx) {
      const userId = liveUser(store, ctx);
      const leaving = req.userId === userId;
      const { project } = projectAccess(
        store,
        userId,
        req.projectId,
        leaving ? "viewer" : "owner",
        "project_id",
        "removing another member",
      );
      if (leaving && project.userId === userId)
        throw new ConnectError(
          "user_id: the owner cannot leave their own project; delete it instead",
          Code.FailedPrecondition,
        );
      const m = member(project.id, req.userId);
      store.atomically(() => {
        store.sharing.remove(project, m, leaving, now());
        store.unassign(m.userId, project.id, now());
      });
      return {};
    },
  };

  function invitation(id: string, email: string) {
    const inv = store.sharing.invitation(id.toLowerCase(), email);
    if (!inv) throw new ConnectError(`invitation ${id} not found`, Code.NotFound);
    return inv;
  }

  function member(projectId: string, userId: string) {
    const m = store.sharing.member(projectId, userId);
    if (!m) throw new ConnectError(`user_id: ${userId} is not a member of the project`, Code.NotFound);
    return m;
  }
}

/** The contract allows EDITOR and VIEWER only (buf.validate `in`). */
function memberRole(r: ProjectRole): MemberRole {
  return r === ProjectRole.EDITOR ? "editor" : "viewer";
}
