import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { appendEvent, type Db } from "@taskmesh/platform";
import type Database from "better-sqlite3";
import { labelCreated, labelDeleted, labelUpdated } from "./events.js";
import type { LabelRecord } from "./project-record.js";

interface Row {
  id: string;
  user_id: string;
  name: string;
  create_time: number;
  update_time: number;
  version: number;
}

const COLUMNS = "id, user_id, name, create_time, update_time, version";

/**
 * SQL for labels and their links to tasks (migration 7). Names are unique per user ignoring case
 * (a unique index); domain refusals are thrown as ConnectErrors and roll the transaction back.
 */
export class LabelsStore {
  readonly #db: Db;
  readonly #get: Database.Statement<[string, string], Row>;
  readonly #byName: Database.Statement<[string, string], Row>;
  readonly #list: Database.Statement<[string], Row>;
  readonly #count: Database.Statement<[string], number>;
  readonly #insert: Database.Statement;
  readonly #rename: Database.Statement;
  readonly #delete: Database.Statement<[string, string]>;
  readonly #unlinkLabel: Database.Statement<[string, string]>;
  readonly #unlinkTask: Database.Statement<[string, string]>;
  readonly #link: Database.Statement<[string, string, string]>;

  constructor(db: Db) {
    this.#db = db;
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM labels WHERE id = ? AND user_id = ?`);
    this.#byName = db.prepare(`SELECT ${COLUMNS} FROM labels WHERE user_id = ? AND name = ? COLLATE NOCASE`);
    this.#list = db.prepare(`SELECT ${COLUMNS} FROM labels WHERE user_id = ? ORDER BY name COLLATE NOCASE, id`);
    this.#count = db.prepare<[string], number>("SELECT count(*) FROM labels WHERE user_id = ?").pluck();
    this.#insert = db.prepare(`INSERT INTO labels (${COLUMNS})
      VALUES (@id, @user_id, @name, @create_time, @update_time, @version)`);
    this.#rename = db.prepare(`UPDATE labels SET name = @name, update_time = @update_time, version = @version
      WHERE id = @id AND user_id = @user_id`);
    this.#delete = db.prepare("DELETE FROM labels WHERE id = ? AND user_id = ?");
    this.#unlinkLabel = db.prepare("DELETE FROM task_labels WHERE label_id = ? AND user_id = ?");
    this.#unlinkTask = db.prepare("DELETE FROM task_labels WHERE task_id = ? AND user_id = ?");
    this.#link = db.prepare("INSERT INTO task_labels (user_id, task_id, label_id) VALUES (?, ?, ?)");
  }

  list(userId: string): LabelRecord[] {
    return this.#list.all(userId).map(fromRow);
  }

  create(userId: string, name: string, now: number, maxLabels: number): LabelRecord {
    return this.#db
      .transaction(() => {
        this.#unique(userId, name, null);
        if ((this.#count.get(userId) ?? 0) >= maxLabels)
          throw new ConnectError(
            `label limit reached: at most ${maxLabels} labels per user; delete one first`,
            Code.ResourceExhausted,
          );
        const l: LabelRecord = { id: randomUUID(), userId, name, createTime: now, updateTime: now, version: 1 };
        this.#insert.run(toRow(l));
        appendEvent(this.#db, labelCreated(l));
        return l;
      })
      .immediate();
  }

  /** One row write and one label.updated, however many tasks carry the label. */
  rename(userId: string, id: string, name: string, now: number): LabelRecord {
    return this.#db
      .transaction(() => {
        const cur = this.require(userId, id, "label_id");
        if (cur.name === name) return cur;
        this.#unique(userId, name, id);
        const l = { ...cur, name, updateTime: now, version: cur.version + 1 };
        this.#rename.run(toRow(l));
        appendEvent(this.#db, labelUpdated(l));
        return l;
      })
      .immediate();
  }

  /** Removes the label from every task and deletes it: one label.deleted. */
  delete(userId: string, id: string, now: number): void {
    this.#db
      .transaction(() => {
        const cur = this.require(userId, id, "label_id");
        this.#unlinkLabel.run(id, userId);
        this.#delete.run(id, userId);
        appendEvent(this.#db, labelDeleted(cur, now));
      })
      .immediate();
  }

  require(userId: string, id: string, field: string): LabelRecord {
    const row = this.#get.get(id, userId);
    if (!row) throw new ConnectError(`${field}: label ${id} not found`, Code.NotFound);
    return fromRow(row);
  }

  /** Checks every id is one of the user's labels (NOT_FOUND naming `field[i]`); sorted, lower case. */
  check(userId: string, ids: readonly string[], field: string): string[] {
    const out = ids.map((raw, i) => this.require(userId, raw.toLowerCase(), `${field}[${i}]`).id);
    return [...new Set(out)].sort();
  }

  /** Replaces the task's label links (inside the task's transaction). */
  setLinks(userId: string, taskId: string, labelIds: readonly string[]): void {
    this.#unlinkTask.run(taskId, userId);
    for (const l of labelIds) this.#link.run(userId, taskId, l);
  }

  #unique(userId: string, name: string, self: string | null): void {
    const other = this.#byName.get(userId, name);
    if (other && other.id !== self)
      throw new ConnectError(`name: a label named "${other.name}" already exists`, Code.AlreadyExists);
  }
}

function fromRow(r: Row): LabelRecord {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    createTime: r.create_time,
    updateTime: r.update_time,
    version: r.version,
  };
}

function toRow(l: LabelRecord): Row {
  return {
    id: l.id,
    user_id: l.userId,
    name: l.name,
    create_time: l.createTime,
    update_time: l.updateTime,
    version: l.version,
  };
}
