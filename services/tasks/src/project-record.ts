import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Label,
  LabelSchema,
  type Project,
  ProjectInvitationSchema,
  type ProjectMember,
  ProjectMemberSchema,
  ProjectRole,
  ProjectSchema,
} from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";

/** A role in a project, weakest first. The owner is the project row's user_id, never a member row. */
export type Role = "viewer" | "editor" | "owner";
export type MemberRole = Exclude<Role, "owner">;

const RANK: Record<Role, number> = { viewer: 1, editor: 2, owner: 3 };

/** True when `have` includes everything `need` may do. */
export function covers(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export interface MemberRecord {
  projectId: string;
  userId: string;
  email: string;
  role: Role;
  joinTime: number;
}

export interface InvitationRecord {
  id: string;
  projectId: string;
  projectName: string;
  email: string;
  role: MemberRole;
  inviterId: string;
  createTime: number;
}

/** A project as stored. Times are epoch milliseconds. */
export interface ProjectRecord {
  id: string;
  userId: string;
  name: string;
  inbox: boolean;
  archived: boolean;
  rank: string;
  createTime: number;
  updateTime: number;
  version: number;
}

/** A label as stored. */
export interface LabelRecord {
  id: string;
  userId: string;
  name: string;
  createTime: number;
  updateTime: number;
  version: number;
}

/** Name of every user's Inbox project. */
export const INBOX_NAME = "Inbox";

const ROLES: Record<Role, ProjectRole> = {
  viewer: ProjectRole.VIEWER,
  editor: ProjectRole.EDITOR,
  owner: ProjectRole.OWNER,
};

export function toRole(r: Role): ProjectRole {
  return ROLES[r];
}

/** The project as `role` sees it (events: the owner's view). */
export function toProject(p: ProjectRecord, role: Role = "owner"): Project {
  return create(ProjectSchema, {
    role: toRole(role),
    id: p.id,
    userId: p.userId,
    name: p.name,
    inbox: p.inbox,
    archived: p.archived,
    rank: p.rank,
    createTime: timestampFromMs(p.createTime),
    updateTime: timestampFromMs(p.updateTime),
    version: BigInt(p.version),
  });
}

export function toLabel(l: LabelRecord): Label {
  return create(LabelSchema, {
    id: l.id,
    userId: l.userId,
    name: l.name,
    createTime: timestampFromMs(l.createTime),
    updateTime: timestampFromMs(l.updateTime),
    version: BigInt(l.version),
  });
}

export function toMember(m: MemberRecord): ProjectMember {
  return create(ProjectMemberSchema, {
    projectId: m.projectId,
    userId: m.userId,
    email: m.email,
    role: toRole(m.role),
    joinTime: timestampFromMs(m.joinTime),
  });
}

export function toInvitation(i: InvitationRecord) {
  return create(ProjectInvitationSchema, {
    id: i.id,
    projectId: i.projectId,
    projectName: i.projectName,
    email: i.email,
    role: toRole(i.role),
    inviterId: i.inviterId,
    createTime: timestampFromMs(i.createTime),
  });
}
