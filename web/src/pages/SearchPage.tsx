import { useQuery } from "@connectrpc/connect-query";
import { skipToken } from "@tanstack/react-query";
import { AnalyticsService } from "@taskmesh/gen/taskmesh/analytics/v1/analytics_pb";
import { useState } from "react";
import { ProblemMessage } from "../components/FieldError";
import { describeError } from "../lib/errors";

/** Full-text search over the user's tasks (the analytics read model, SQLite FTS5). */
export function SearchPage() {
  const [text, setText] = useState("");
  const [query, setQuery] = useState("");
  const q = useQuery(AnalyticsService.method.searchTasks, query ? { query, limit: 20 } : skipToken);
  return (
    <section aria-labelledby="search-h">
      <h1 id="search-h" tabIndex={-1}>
        Search
      </h1>
      <search>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            setQuery(text.trim());
          }}
        >
          <label htmlFor="search-input">Search your tasks</label>
          <div className="row">
            <input
              id="search-input"
              type="search"
              maxLength={200}
              value={text}
              onChange={(e) => setText(e.target.value)}
            />
            <button type="submit">Search</button>
          </div>
        </form>
      </search>
      {q.isFetching && <p>Searching…</p>}
      {q.isError && <ProblemMessage message={describeError(q.error).message} />}
      {q.data && (
        <>
          <p role="status">
            {q.data.hits.length === 0
              ? `Nothing found for “${query}”.`
              : `${q.data.hits.length} result(s) for “${query}”.`}
          </p>
          <ul className="hits" aria-label="Search results">
            {q.data.hits.map((h) => (
              <li key={h.taskId}>
                <strong>{h.title}</strong>
                {h.completed && <span className="tag">completed</span>}
                {h.snippet && <p className="hint">{h.snippet}</p>}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
