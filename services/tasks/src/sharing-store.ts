import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { appendEvent, type Db } from "@taskmesh/platform";
import type Database from "better-sqlite3";
import { memberAdded, memberRemoved, memberUpdated } from "./events.js";
import { noteChange } from "./project-feed.js";
import type { InvitationRecord, MemberRecord, MemberRole, ProjectRecord } from "./project-record.js";
import { prepared } from "./statements.js";

interface MemberRow {
  project_id: string;
  user_id: string;
  email: string;
  role: MemberRole;
  join_time: number;
}

interface InvitationRow {
  id: string;
  project_id: string;
  project_name: string;
  email: string;
  role: MemberRole;
  inviter_id: string;
  create_time: number;
}

/** Migration 8: members and invitations of shared projects, and indexes for a project's tasks of every creator. */
export const SHARING_MIGRATION_SQL = `
  CREATE TABLE project_members (
    project_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('editor', 'viewer')),
    join_time  INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX project_members_by_user ON project_members (user_id, project_id);

  CREATE TABLE project_invitations (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    email       TEXT NOT NULL,            -- lower-cased
    role        TEXT NOT NULL CHECK (role IN ('editor', 'viewer')),
    inviter_id  TEXT NOT NULL,
    create_time INTEGER NOT NULL
  ) STRICT;
  CREATE UNIQUE INDEX project_invitations_by_project_email ON project_invitations (project_id, email);
  CREATE INDEX project_invitations_by_email ON project_invitations (email);

  -- Whom a task is assigned to: the project's owner or an editor (checked by the service).
  ALTER TABLE tasks ADD COLUMN assignee_id TEXT;
  CREATE INDEX tasks_by_assignee ON tasks (assignee_id) WHERE assignee_id IS NOT NULL;

  -- The owner's email as their token said when they last invited someone (ListMembers shows it).
  ALTER TABLE projects ADD COLUMN owner_email TEXT NOT NULL DEFAULT '';

  -- A shared project holds tasks of several creators: its lists and sibling ranks are read by
  -- project alone (the (user_id, project_id, ...) indexes serve the owner-only reads).
  CREATE INDEX tasks_in_project_rank ON tasks (project_id, rank, id);
  CREATE INDEX tasks_in_project_due ON tasks (project_id, due_sort, id);
`;

/**
 * SQL for members and invitations. Domain refusals are ConnectErrors thrown inside the
 * transaction, which they roll back. Who may call what is decided by the service (access.ts);
 * these methods check only what the data says (already a member, the Inbox, ...).
 */
export class SharingStore {
  readonly #db: Db;
  readonly #member: Database.Statement<[string, string], MemberRow>;
  readonly #members: Database.Statement<[string], MemberRow>;
  readonly #sharedWith: Database.Statement<[string], { project_id: string; role: MemberRole }>;
  readonly #invitation: Database.Statement<[string], InvitationRow>;
  readonly #invitationsFor: Database.Statement<[string], InvitationRow>;

  constructor(db: Db) {
    this.#db = db;
    this.#member = db.prepare("SELECT * FROM project_members WHERE project_id = ? AND user_id = ?");
    this.#members = db.prepare("SELECT * FROM project_members WHERE project_id = ? ORDER BY join_time, user_id");
    this.#sharedWith = db.prepare("SELECT project_id, role FROM project_members WHERE user_id = ?");
    const inv = `SELECT i.id, i.project_id, p.name AS project_name, i.email, i.role, i.inviter_id, i.create_time
      FROM project_invitations i JOIN projects p ON p.id = i.project_id`;
    this.#invitation = db.prepare(`${inv} WHERE i.id = ?`);
    this.#invitationsFor = db.prepare(`${inv} WHERE i.email = ? ORDER BY i.create_time, i.id`);
  }

  /** The member row of `userId` in the project (not the owner, who has none). */
  member(projectId: string, userId: string): MemberRecord | undefined {
    const r = this.#member.get(projectId, userId);
    return r && fromMemberRow(r);
  }

  /** Members (not the owner) by join time. */
  members(projectId: string): MemberRecord[] {
    return this.#members.all(projectId).map(fromMemberRow);
  }

  /** The projects shared with `userId` and the role in each. */
  sharedWith(userId: string): { projectId: string; role: MemberRole }[] {
    return this.#sharedWith.all(userId).map((r) => ({ projectId: r.project_id, role: r.role }));
  }

  /** A pending invitation to `email` (lower-cased); the owner's email is recorded for ListMembers. */
  invite(p: ProjectRecord, email: string, role: MemberRole, inviterEmail: string, now: number): InvitationRecord {
    return this.#db
      .transaction(() => {
        if (p.inbox) throw new ConnectError("the Inbox cannot be shared", Code.FailedPrecondition);
        if (inviterEmail !== "" && email === inviterEmail)
          throw new ConnectError("email: you own this project; invite someone else", Code.InvalidArgument);
        const existing = prepared<[string, string], number>(
          this.#db,
          "SELECT 1 FROM project_members WHERE project_id = ? AND email = ?",
        )
          .pluck()
          .get(p.id, email);
        if (existing) throw new ConnectError(`email: ${email} is already a member`, Code.AlreadyExists);
        const pending = prepared<[string, string], number>(
          this.#db,
          "SELECT 1 FROM project_invitations WHERE project_id = ? AND email = ?",
        )
          .pluck()
          .get(p.id, email);
        if (pending) throw new ConnectError(`email: ${email} already has a pending invitation`, Code.AlreadyExists);
        const id = randomUUID();
        prepared(
          this.#db,
          "INSERT INTO project_invitations (id, project_id, email, role, inviter_id, create_time) VALUES (?, ?, ?, ?, ?, ?)",
        ).run(id, p.id, email, role, p.userId, now);
        if (inviterEmail !== "")
          prepared(this.#db, "UPDATE projects SET owner_email = ? WHERE id = ?").run(inviterEmail, p.id);
        return { id, projectId: p.id, projectName: p.name, email, role, inviterId: p.userId, createTime: now };
      })
      .immediate();
  }

  /** Pending invitations addressed to `email` (lower-cased). */
  invitationsFor(email: string): InvitationRecord[] {
    return email === "" ? [] : this.#invitationsFor.all(email).map(fromInvitationRow);
  }

  /** The invitation if it is addressed to `email`; someone else's is undefined, like a missing one. */
  invitation(id: string, email: string): InvitationRecord | undefined {
    const r = this.#invitation.get(id);
    return r && email !== "" && r.email === email ? fromInvitationRow(r) : undefined;
  }

  /** Turns the invitation into a membership of `userId` (project.member_added, for the owner). */
  accept(inv: InvitationRecord, owner: ProjectRecord, userId: string, now: number): MemberRecord {
    return this.#db
      .transaction(() => {
        prepared(this.#db, "DELETE FROM project_invitations WHERE id = ?").run(inv.id);
        if (owner.userId === userId)
          throw new ConnectError("invitation_id: you own this project", Code.FailedPrecondition);
        const m: MemberRecord = { projectId: inv.projectId, userId, email: inv.email, role: inv.role, joinTime: now };
        prepared(
          this.#db,
          `INSERT INTO project_members (project_id, user_id, email, role, join_time) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role, email = excluded.email`,
        ).run(m.projectId, m.userId, m.email, m.role, m.joinTime);
        appendEvent(this.#db, memberAdded(owner.userId, m, now));
        this.#noteMember(m, now);
        return m;
      })
      .immediate();
  }

  decline(id: string): void {
    prepared(this.#db, "DELETE FROM project_invitations WHERE id = ?").run(id);
  }

  /** Changes a member's role; the same role changes nothing and writes no event. */
  setRole(owner: ProjectRecord, m: MemberRecord, role: MemberRole, now: number): MemberRecord {
    return this.#db
      .transaction(() => {
        if (m.role === role) return m;
        prepared(this.#db, "UPDATE project_members SET role = ? WHERE project_id = ? AND user_id = ?").run(
          role,
          m.projectId,
          m.userId,
        );
        const next = { ...m, role };
        appendEvent(this.#db, memberUpdated(owner.userId, next, now));
        this.#noteMember(next, now);
        return next;
      })
      .immediate();
  }

  remove(owner: ProjectRecord, m: MemberRecord, left: boolean, now: number): void {
    this.#db
      .transaction(() => {
        prepared(this.#db, "DELETE FROM project_members WHERE project_id = ? AND user_id = ?").run(
          m.projectId,
          m.userId,
        );
        appendEvent(this.#db, memberRemoved(owner.userId, m, left, now));
        this.#noteMember(m, now);
      })
      .immediate();
  }

  /** A member joined, changed role or left, for WatchProject (project-feed.ts). */
  #noteMember(m: MemberRecord, now: number): void {
    noteChange(this.#db, {
      projectId: m.projectId,
      kind: "member_changed",
      taskId: "",
      actorId: m.userId,
      memberUserId: m.userId,
      time: now,
    });
  }

  /** The owner's email as recorded at their last invitation ("" before one). */
  ownerEmail(projectId: string): string {
    return (
      prepared<[string], string>(this.#db, "SELECT owner_email FROM projects WHERE id = ?").pluck().get(projectId) ?? ""
    );
  }

  /** A project's members and invitations, with the project (TasksStore.deleteProject, purge). No event. */
  dropProject(projectId: string): void {
    prepared(this.#db, "DELETE FROM project_members WHERE project_id = ?").run(projectId);
    prepared(this.#db, "DELETE FROM project_invitations WHERE project_id = ?").run(projectId);
  }

  /** A deleted user's memberships and the invitations they sent. No event (user.deleted is the fact). */
  dropUser(userId: string): void {
    // No event, but open WatchProject streams of the user end (their access is checked per change).
    for (const { projectId, role } of this.sharedWith(userId))
      this.#noteMember({ projectId, userId, email: "", role, joinTime: 0 }, Date.now());
    prepared(this.#db, "DELETE FROM project_members WHERE user_id = ?").run(userId);
    prepared(this.#db, "DELETE FROM project_invitations WHERE inviter_id = ?").run(userId);
  }
}

function fromMemberRow(r: MemberRow): MemberRecord {
  return { projectId: r.project_id, userId: r.user_id, email: r.email, role: r.role, joinTime: r.join_time };
}

function fromInvitationRow(r: InvitationRow): InvitationRecord {
  return {
    id: r.id,
    projectId: r.project_id,
    projectName: r.project_name,
    email: r.email,
    role: r.role,
    inviterId: r.inviter_id,
    createTime: r.create_time,
  };
}
