import type { Db, Migration } from "@taskmesh/platform";

/**
 * `task_search` keeps one FTS5 index for every user's live tasks, so bm25 ranks with the same
 * corpus statistics as before, but each user's rows sit in their own rowid range:
 * rowid = (owner << 32) | tasks.id, where owner is the user's number in `search_owners`. A search
 * gives FTS5 the caller's range, which it applies while reading each term's doclist, so only the
 * caller's matches are read and ranked. (Keyed by tasks.id alone, every user's matches were
 * read and joined to `tasks` to drop the others': a word in a tenth of 122k tasks cost a user with
 * 100 of them ~7–11 ms.) AUTOINCREMENT: a purged user's number is never handed to someone else.
 * The layout holds up to 2^31 users and task rows below 2^32 (four billion folded tasks); put()
 * refuses a larger row rather than let it spill into the next user's range.
 */
export const SEARCH_MIGRATION: Migration = {
  version: 11,
  name: "search rows in per-user rowid ranges",
  sql: `
    CREATE TABLE search_owners (
      n       INTEGER PRIMARY KEY AUTOINCREMENT,
      user_id TEXT NOT NULL UNIQUE
    );
    DROP TABLE task_search;
    CREATE VIRTUAL TABLE task_search USING fts5(title, notes, tokenize = 'unicode61 remove_diacritics 2');
    INSERT INTO search_owners (user_id) SELECT DISTINCT user_id FROM tasks WHERE deleted = 0 ORDER BY user_id;
    INSERT INTO task_search (rowid, title, notes)
      SELECT (o.n << 32) | t.id, t.title, t.notes FROM tasks t JOIN search_owners o USING (user_id)
      WHERE t.deleted = 0;
  `,
};

/** What SearchTasks may narrow the hits to. */
export interface SearchFilter {
  projectId?: string;
  labelId?: string;
}

export interface SearchHitRow {
  taskId: string;
  title: string;
  snippet: string;
  completed: boolean;
}

export interface TaskSearchOptions {
  /**
   * At most this many of the caller's matches are ranked: when more match (after the project/label
   * filter), only the newest this many (highest task row, i.e. first folded last) are ranked, and
   * the hits are the best of those. Ranking reads bm25 and the task id (for ties) of every ranked
   * row, ~2–3 µs a row on the bench's machine: over all 10k matches of a 100k-task user that was
   * ~20 ms a search, over 2,000 it is ~5 ms whatever the user's size. Default 2000.
   */
  maxRankedMatches?: number;
}

const MAX_TASK_ROW = 0xffff_ffff;
/** The caller's rowid range, for statements bound with @owner. */
const RANGE = "task_search.rowid BETWEEN (@owner << 32) AND ((@owner << 32) | 0xffffffff)";
/** The caller's range from task row @from on (see maxRankedMatches), for the ranking statements. */
const RANGE_FROM = "task_search.rowid BETWEEN ((@owner << 32) | @from) AND ((@owner << 32) | 0xffffffff)";

/** The FTS5 index of live tasks and SearchTasks' query on it. Synchronous, like AnalyticsStore. */
export class TaskSearch {
  readonly #db: Db;
  readonly #owner;
  readonly #addOwner;
  readonly #dropOwner;
  readonly #insert;
  readonly #delete;
  readonly #deleteRange;
  readonly #snippets;
  readonly #firstTerm;
  readonly #maxRanked: number;
  readonly #ranked = new Map<string, ReturnType<Db["prepare"]>>();

  constructor(db: Db, options: TaskSearchOptions = {}) {
    this.#db = db;
    this.#maxRanked = options.maxRankedMatches ?? 2000;
    if (!Number.isSafeInteger(this.#maxRanked) || this.#maxRanked < 1)
      throw new Error(`maxRankedMatches must be a positive integer, got ${options.maxRankedMatches}`);
    // The index's terms in order, read lazily (the `instance` kind walks entries on demand; `row`
    // would count every entry of a term first). TEMP: nothing in the schema, made per connection.
    db.exec("CREATE VIRTUAL TABLE IF NOT EXISTS temp.task_search_terms USING fts5vocab(main, task_search, instance)");
    this.#firstTerm = db
      .prepare<[string], string>("SELECT term FROM temp.task_search_terms WHERE term >= ? LIMIT 1")
      .pluck();
    this.#owner = db.prepare<[string], number>("SELECT n FROM search_owners WHERE user_id = ?").pluck();
    this.#addOwner = db.prepare<[string], number>("INSERT INTO search_owners (user_id) VALUES (?) RETURNING n").pluck();
    this.#dropOwner = db.prepare("DELETE FROM search_owners WHERE n = ?");
    this.#insert = db.prepare(
      "INSERT INTO task_search (rowid, title, notes) VALUES ((@owner << 32) | @id, @title, @notes)",
    );
    this.#delete = db.prepare("DELETE FROM task_search WHERE rowid = ((@owner << 32) | @id)");
    this.#deleteRange = db.prepare(`DELETE FROM task_search WHERE ${RANGE}`);
    // Snippets of the kept rows only: snippet() is costly (it re-reads and re-tokenizes the text),
    // and in the ranking statement SQLite computes it for every match before the sort keeps
    // `limit`. One statement for all of them: a `rowid = ?` lookup per row would expand a prefix
    // term over the whole index each time. `+rowid` keeps the IN list a filter, so FTS5 walks the
    // caller's range once.
    this.#snippets = db.prepare<unknown[], { id: number; snippet: string }>(
      `SELECT task_search.rowid & 0xffffffff AS id, snippet(task_search, -1, '[', ']', '…', 12) AS snippet
       FROM task_search
       WHERE task_search MATCH @match AND ${RANGE_FROM}
         AND +task_search.rowid IN (SELECT (@owner << 32) | value FROM json_each(@ids))`,
    );
  }

  /** Indexes task row `id` of `userId` (remove() the previous version first). */
  put(userId: string, id: number, title: string, notes: string): void {
    if (!Number.isSafeInteger(id) || id < 1 || id > MAX_TASK_ROW)
      throw new Error(`task row ${id} does not fit the search index's rowid (at most ${MAX_TASK_ROW})`);
    const owner = this.#owner.get(userId) ?? (this.#addOwner.get(userId) as number);
    this.#insert.run({ owner, id, title, notes });
  }

  /** Drops task row `id` of `userId` from the index (nothing when it is not there). */
  remove(userId: string, id: number): void {
    const owner = this.#owner.get(userId);
    if (owner !== undefined) this.#delete.run({ owner, id });
  }

  /** Drops every row of the user and the user's number. */
  purge(userId: string): void {
    const owner = this.#owner.get(userId);
    if (owner === undefined) return;
    this.#deleteRange.run({ owner });
    this.#dropOwner.run(owner);
  }

  /**
   * The user's live tasks matching an FTS5 expression (see ftsQuery), best first (bm25, the task id
   * breaking ties so that equal databases give equal answers), optionally of one project/label.
   */
  search(userId: string, match: string, limit: number, filter: SearchFilter = {}): SearchHitRow[] {
    const owner = this.#owner.get(userId);
    if (owner === undefined) return [];
    const params = {
      match: this.#completeUnique(match),
      owner,
      user: userId,
      limit,
      project: filter.projectId ?? null,
      label: filter.labelId ?? null,
      skip: this.#maxRanked - 1,
    };
    // The oldest task row that is ranked: the newest maxRankedMatches matches' last, or the first.
    const from = (this.#statement(filter, "oldest").get(params) as number | undefined) ?? 0;
    const rows = this.#statement(filter, "ranked").all({ ...params, from }) as {
      id: number;
      task_id: string;
      title: string;
      status: string;
    }[];
    if (rows.length === 0) return [];
    const snippets = new Map(
      this.#snippets
        .all({ match: params.match, owner, from, ids: JSON.stringify(rows.map((r) => r.id)) })
        .map((s) => [s.id, s.snippet]),
    );
    return rows.map((r) => ({
      taskId: r.task_id,
      title: r.title,
      snippet: snippets.get(r.id) ?? "",
      completed: r.status === "completed",
    }));
  }

  /**
   * `match` with each prefix phrase `"p"*` (as ftsQuery writes them) that only one term of the
   * index starts with replaced by that term, `"t"`. The two match the same rows with the same bm25
   * and snippet, but FTS5 answers a prefix by first merging the doclists of every term it expands
   * to across the whole index, every user's rows included, and again in each statement (three
   * per search): a word in every task was ~6 ms a statement at 122k tasks, whoever searched. A
   * term is looked up only for a plain ASCII prefix, which the tokenizer indexes as it is (case is
   * already folded); anything else stays a prefix.
   */
  #completeUnique(match: string): string {
    return match.replace(/"([a-z0-9]+)"\*/g, (phrase, prefix: string) => {
      const first = this.#firstTerm.get(prefix);
      if (first === undefined || !first.startsWith(prefix)) return phrase;
      // Tokens are letters and digits, so "\x01" sorts right after `first` and before its extensions.
      const next = this.#firstTerm.get(`${first}\x01`);
      return next?.startsWith(prefix) ? phrase : `"${first}"`;
    });
  }

  /**
   * The statements of the filter's shape, prepared once per shape: `oldest` finds the
   * maxRankedMatches-th newest match (FTS5 walks the doclists by rowid, newest first, without
   * ranking), `ranked` ranks from there on. The user and deleted conditions repeat what the rowid
   * range and the index's upkeep already ensure, at the cost of the row the join reads anyway.
   */
  #statement(filter: SearchFilter, kind: "oldest" | "ranked") {
    const shape = `${kind}${+!!filter.projectId}${+!!filter.labelId}`;
    let stmt = this.#ranked.get(shape);
    if (!stmt) {
      const where = [
        ...(filter.projectId ? ["t.project_id = @project"] : []),
        ...(filter.labelId ? ["t.id IN (SELECT task_row FROM task_labels WHERE label_id = @label)"] : []),
      ]
        .map((w) => `AND ${w}`)
        .join(" ");
      const from = `FROM task_search JOIN tasks t ON t.id = task_search.rowid & 0xffffffff
         WHERE task_search MATCH @match AND t.user_id = @user AND t.deleted = 0 ${where}`;
      // Without a filter, `oldest` reads the index alone: the range holds only the caller's live rows.
      const oldest = where
        ? `SELECT t.id ${from} AND ${RANGE}`
        : `SELECT task_search.rowid & 0xffffffff FROM task_search WHERE task_search MATCH @match AND ${RANGE}`;
      stmt =
        kind === "oldest"
          ? this.#db.prepare(`${oldest} ORDER BY task_search.rowid DESC LIMIT 1 OFFSET @skip`).pluck()
          : this.#db.prepare(
              `SELECT t.id, t.task_id, t.title, t.status ${from} AND ${RANGE_FROM}
               ORDER BY task_search.rank, t.task_id LIMIT @limit`,
            );
      this.#ranked.set(shape, stmt);
    }
    return stmt;
  }
}
