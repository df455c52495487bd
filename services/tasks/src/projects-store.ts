import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { appendEvent, type Db } from "@taskmesh/platform";
import type Database from "better-sqlite3";
import { projectCreated, projectUpdated } from "./events.js";
import { noteChange } from "./project-feed.js";
import { INBOX_NAME, type ProjectRecord } from "./project-record.js";
import { MAX_RANK_LENGTH, rankBetween, ranksFor } from "./rank.js";
import { prepared } from "./statements.js";

interface Row {
  id: string;
  user_id: string;
  name: string;
  inbox: number;
  archived: number;
  rank: string;
  create_time: number;
  update_time: number;
  version: number;
}

const COLUMNS = "id, user_id, name, inbox, archived, rank, create_time, update_time, version";
/** The Inbox first whatever its rank, then the user's order. */
const ORDER = "ORDER BY inbox DESC, rank, id";

/**
 * SQL for projects (migration 7). Domain refusals are thrown as ConnectErrors: every method runs
 * inside a transaction (its own, or the caller's), which the throw rolls back.
 */
export class ProjectsStore {
  readonly #db: Db;
  readonly #get: Database.Statement<[string, string], Row>;
  readonly #inbox: Database.Statement<[string], Row>;
  readonly #all: Database.Statement<[string], Row>;
  readonly #active: Database.Statement<[string], Row>;
  readonly #count: Database.Statement<[string], number>;
  readonly #insert: Database.Statement;
  readonly #save: Database.Statement;
  readonly #next: Database.Statement<[string, string], string>;
  readonly #prev: Database.Statement<[string, string], string>;
  readonly #last: Database.Statement<[string], string | null>;
  readonly #getAny: Database.Statement<[string], Row>;

  constructor(db: Db) {
    this.#db = db;
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM projects WHERE id = ? AND user_id = ?`);
    this.#getAny = db.prepare(`SELECT ${COLUMNS} FROM projects WHERE id = ?`);
    this.#inbox = db.prepare(`SELECT ${COLUMNS} FROM projects WHERE user_id = ? AND inbox = 1`);
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM projects WHERE user_id = ? ${ORDER}`);
    this.#active = db.prepare(`SELECT ${COLUMNS} FROM projects WHERE user_id = ? AND archived = 0 ${ORDER}`);
    this.#count = db.prepare<[string], number>("SELECT count(*) FROM projects WHERE user_id = ?").pluck();
    this.#insert = db.prepare(`INSERT INTO projects (${COLUMNS})
      VALUES (@id, @user_id, @name, @inbox, @archived, @rank, @create_time, @update_time, @version)`);
    this.#save = db.prepare(`UPDATE projects SET name = @name, archived = @archived, rank = @rank,
      update_time = @update_time, version = @version WHERE id = @id AND user_id = @user_id`);
    this.#next = db
      .prepare<[string, string], string>(
        "SELECT rank FROM projects WHERE user_id = ? AND inbox = 0 AND rank > ? ORDER BY rank LIMIT 1",
      )
      .pluck();
    this.#prev = db
      .prepare<[string, string], string>(
        "SELECT rank FROM projects WHERE user_id = ? AND inbox = 0 AND rank < ? ORDER BY rank DESC LIMIT 1",
      )
      .pluck();
    this.#last = db
      .prepare<[string], string | null>("SELECT max(rank) FROM projects WHERE user_id = ? AND inbox = 0")
      .pluck();
  }

  get(userId: string, id: string): ProjectRecord | undefined {
    const row = this.#get.get(id, userId);
    return row && fromRow(row);
  }

  /** The project whoever owns it: only for the service's role checks (access.ts) and the store. */
  getAny(id: string): ProjectRecord | undefined {
    const row = this.#getAny.get(id);
    return row && fromRow(row);
  }

  /** The projects `userId` owns, the Inbox included. */
  ownedBy(userId: string): ProjectRecord[] {
    return this.#all.all(userId).map(fromRow);
  }

  /** The project, or NOT_FOUND naming `field` (another user's project is not found either). */
  require(userId: string, id: string, field = "project_id"): ProjectRecord {
    const p = this.get(userId, id);
    if (!p) throw new ConnectError(`${field}: project ${id} not found`, Code.NotFound);
    return p;
  }

  /**
   * The user's Inbox, created the first time it is needed. No project.created: every user has an
   * Inbox implicitly (consumers meet its id on task events), and a task's first create then
   * publishes exactly task.created, as before projects existed.
   */
  inbox(userId: string, now: number): ProjectRecord {
    // Every create without project_id asks: the Inbox exists after the first, and a read needs no
    // savepoint; the transaction below only runs for a user without one yet.
    const found = this.#inbox.get(userId);
    if (found) return fromRow(found);
    return this.#db
      .transaction(() => {
        const row = this.#inbox.get(userId);
        if (row) return fromRow(row);
        const p = newProject(userId, INBOX_NAME, true, "a0", now);
        this.#insert.run(toRow(p));
        return p;
      })
      .immediate();
  }

  list(userId: string, includeArchived: boolean, now: number): ProjectRecord[] {
    this.inbox(userId, now);
    return (includeArchived ? this.#all : this.#active).all(userId).map(fromRow);
  }

  create(userId: string, name: string, now: number, maxProjects: number): ProjectRecord {
    return this.#db
      .transaction(() => {
        this.inbox(userId, now);
        if ((this.#count.get(userId) ?? 0) >= maxProjects)
          throw new ConnectError(
            `project limit reached: at most ${maxProjects} projects per user (the Inbox included); delete one first`,
            Code.ResourceExhausted,
          );
        const p = newProject(userId, name, false, rankBetween(this.#last.get(userId) ?? null, null), now);
        this.#insert.run(toRow(p));
        appendEvent(this.#db, projectCreated(p));
        return p;
      })
      .immediate();
  }

  /** Renames and/or (un)archives; the Inbox is FAILED_PRECONDITION. No change, no event. */
  update(userId: string, id: string, change: { name?: string; archived?: boolean }, now: number): ProjectRecord {
    return this.#db
      .transaction(() => {
        const cur = this.require(userId, id);
        if (cur.inbox) throw new ConnectError("the Inbox cannot be renamed or archived", Code.FailedPrecondition);
        const next = { ...cur, name: change.name ?? cur.name, archived: change.archived ?? cur.archived };
        const changed = [
          ...(next.name !== cur.name ? ["name"] : []),
          ...(next.archived !== cur.archived ? ["archived"] : []),
        ];
        return changed.length === 0 ? cur : this.#write(next, changed, now);
      })
      .immediate();
  }

  /** Places the project right after (or before) `neighbourId`; neither may be the Inbox. */
  move(userId: string, id: string, neighbour: { after: string } | { before: string }, now: number): ProjectRecord {
    return this.#db
      .transaction(() => {
        const cur = this.require(userId, id);
        const field = "after" in neighbour ? "after_project_id" : "before_project_id";
        const nid = "after" in neighbour ? neighbour.after : neighbour.before;
        const n = this.require(userId, nid, field);
        if (cur.inbox)
          throw new ConnectError("the Inbox always comes first; it cannot be moved", Code.FailedPrecondition);
        if (n.inbox) throw new ConnectError(`${field}: the Inbox always comes first`, Code.InvalidArgument);
        if (n.id === cur.id) throw new ConnectError(`${field}: must name another project`, Code.InvalidArgument);
        const rank =
          "after" in neighbour
            ? rankBetween(n.rank, this.#nextRank(userId, n.rank, cur.id))
            : rankBetween(this.#prevRank(userId, n.rank, cur.id), n.rank);
        const moved = this.#write({ ...cur, rank }, ["rank"], now);
        if (rank.length <= MAX_RANK_LENGTH) return moved;
        // Renumbered in their order, without events (as TasksStore does for tasks).
        const ids = prepared<[string], string>(
          this.#db,
          "SELECT id FROM projects WHERE user_id = ? AND inbox = 0 ORDER BY rank, id",
        )
          .pluck()
          .all(userId);
        const ranks = ranksFor(ids.length);
        const set = prepared(this.#db, "UPDATE projects SET rank = ? WHERE id = ? AND user_id = ?");
        for (const [i, pid] of ids.entries()) set.run(ranks[i], pid, userId);
        return this.require(userId, id);
      })
      .immediate();
  }

  /** Deletes the project row only; TasksStore.deleteProject deletes its tasks first. */
  deleteRow(p: ProjectRecord): void {
    prepared(this.#db, "DELETE FROM projects WHERE id = ? AND user_id = ?").run(p.id, p.userId);
  }

  #nextRank(userId: string, rank: string, self: string): string | null {
    // Skipping the moved project's own rank: it is about to change.
    const next = this.#next.get(userId, rank);
    if (next === undefined) return null;
    const own = this.get(userId, self);
    return own && own.rank === next ? (this.#next.get(userId, next) ?? null) : next;
  }

  #prevRank(userId: string, rank: string, self: string): string | null {
    const prev = this.#prev.get(userId, rank);
    if (prev === undefined) return null;
    const own = this.get(userId, self);
    return own && own.rank === prev ? (this.#prev.get(userId, prev) ?? null) : prev;
  }

  #write(next: ProjectRecord, changed: string[], now: number): ProjectRecord {
    const p = { ...next, updateTime: now, version: next.version + 1 };
    this.#save.run(toRow(p));
    appendEvent(this.#db, projectUpdated(p, changed));
    noteChange(this.#db, { projectId: p.id, kind: "project_updated", taskId: "", actorId: p.userId, time: now });
    return p;
  }
}

function newProject(userId: string, name: string, inbox: boolean, rank: string, now: number): ProjectRecord {
  return { id: randomUUID(), userId, name, inbox, archived: false, rank, createTime: now, updateTime: now, version: 1 };
}

function fromRow(r: Row): ProjectRecord {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    inbox: r.inbox === 1,
    archived: r.archived === 1,
    rank: r.rank,
    createTime: r.create_time,
    updateTime: r.update_time,
    version: r.version,
  };
}

function toRow(p: ProjectRecord): Row {
  return {
    id: p.id,
    user_id: p.userId,
    name: p.name,
    inbox: p.inbox ? 1 : 0,
    archived: p.archived ? 1 : 0,
    rank: p.rank,
    create_time: p.createTime,
    update_time: p.updateTime,
    version: p.version,
  };
}
