import { createConnectQueryKey, useInfiniteQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { Priority, type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { useCallback, useEffect, useRef, useState } from "react";
import { ProblemMessage } from "../components/FieldError";
import { TaskForm } from "../components/TaskForm";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";
import { preview } from "../lib/recurrence";
import { dayBounds, formatInstant, msTs, tsMs } from "../lib/time";
import { useZone } from "../lib/use-zone";

const FILTERS = {
  open: "Open",
  today: "Due today",
  upcoming: "Upcoming",
  overdue: "Overdue",
  completed: "Completed",
} as const;
type Filter = keyof typeof FILTERS;

/** ListTasks' filters: status plus a due window (due_after/due_before), in the user's zone for "today". */
function filterRequest(f: Filter, zone: string) {
  const now = Date.now();
  switch (f) {
    case "open":
      return { status: TaskStatus.OPEN };
    case "today": {
      const [start, end] = dayBounds(now, zone);
      return { status: TaskStatus.OPEN, dueAfter: msTs(start), dueBefore: msTs(end) };
    }
    case "upcoming":
      return { status: TaskStatus.OPEN, dueAfter: msTs(now) };
    case "overdue":
      return { status: TaskStatus.OPEN, dueBefore: msTs(now) };
    case "completed":
      return { status: TaskStatus.COMPLETED };
  }
}

const UNDO_MS = 5000;

export function TasksPage() {
  const { api } = useApp();
  const zone = useZone();
  const queryClient = useQueryClient();
  const [filter, setFilter] = useState<Filter>("open");
  // ListTasks' priority filter; UNSPECIFIED = every priority.
  const [priority, setPriority] = useState<Priority>(Priority.UNSPECIFIED);
  const [editing, setEditing] = useState<Task | "new" | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  const [status, setStatus] = useState<string | undefined>();
  // Optimistic state: shown at once, rolled back when the call fails.
  const [completing, setCompleting] = useState<Set<string>>(new Set());
  const [deleted, setDeleted] = useState<Map<string, ReturnType<typeof setTimeout>>>(new Map());
  const opener = useRef<HTMLElement | null>(null);
  // The "today"/"upcoming" window is fixed when the filter is chosen, so the query key is stable.
  const [request, setRequest] = useState(() => filterRequest("open", zone));
  useEffect(() => setRequest(filterRequest(filter, zone)), [filter, zone]);

  const list = useInfiniteQuery(
    TaskService.method.listTasks,
    { ...request, priority, pageSize: 20, pageToken: "" },
    {
      pageParamKey: "pageToken",
      getNextPageParam: (last) => last.nextPageToken || undefined,
      // New occurrences are created by the recurrence service after a completion: look again now and then.
      refetchInterval: 15_000,
    },
  );

  const refresh = useCallback(
    () =>
      queryClient.invalidateQueries({
        queryKey: createConnectQueryKey({ schema: TaskService, cardinality: undefined }),
      }),
    [queryClient],
  );

  const complete = async (t: Task) => {
    setProblem(undefined);
    setCompleting((s) => new Set(s).add(t.id));
    try {
      await api.tasks.completeTask({ taskId: t.id });
      setStatus(
        t.recurrenceRule ? `Completed “${t.title}”. The next occurrence is on its way.` : `Completed “${t.title}”.`,
      );
      await refresh();
      // The next occurrence is created from the task.completed event, a moment later.
      if (t.recurrenceRule) for (const ms of [700, 2000, 5000]) setTimeout(() => void refresh(), ms);
    } catch (err) {
      setProblem(`Could not complete “${t.title}”: ${describeError(err).message}`);
    } finally {
      setCompleting((s) => {
        const n = new Set(s);
        n.delete(t.id);
        return n;
      });
    }
  };

  const reopen = async (t: Task) => {
    setProblem(undefined);
    try {
      await api.tasks.reopenTask({ taskId: t.id });
      setStatus(`Reopened “${t.title}”.`);
      await refresh();
    } catch (err) {
      setProblem(`Could not reopen “${t.title}”: ${describeError(err).message}`);
    }
  };

  const remove = (t: Task) => {
    setProblem(undefined);
    const timer = setTimeout(async () => {
      try {
        await api.tasks.deleteTask({ taskId: t.id });
        await refresh();
      } catch (err) {
        setProblem(`Could not delete “${t.title}”: ${describeError(err).message}`);
      } finally {
        setDeleted((m) => {
          const n = new Map(m);
          n.delete(t.id);
          return n;
        });
      }
    }, UNDO_MS);
    setDeleted((m) => new Map(m).set(t.id, timer));
    setStatus(`Deleted “${t.title}”.`);
  };
  const undo = (id: string) => {
    const timer = deleted.get(id);
    if (timer) clearTimeout(timer);
    setDeleted((m) => {
      const n = new Map(m);
      n.delete(id);
      return n;
    });
    setStatus("Delete undone.");
  };

  const tasks = (list.data?.pages ?? []).flatMap((p) => p.tasks);
  const pendingDeletes = tasks.filter((t) => deleted.has(t.id));

  return (
    <section aria-labelledby="tasks-h">
      <div className="heading-row">
        <h1 id="tasks-h" tabIndex={-1}>
          Tasks
        </h1>
        <button
          type="button"
          onClick={(e) => {
            opener.current = e.currentTarget;
            setEditing("new");
          }}
        >
          New task
        </button>
      </div>
      <fieldset className="filters">
        <legend className="sr-only">Filter tasks</legend>
        {(Object.keys(FILTERS) as Filter[]).map((f) => (
          <button
            key={f}
            type="button"
            className={f === filter ? "chip on" : "chip"}
            aria-pressed={f === filter}
            onClick={() => setFilter(f)}
          >
            {FILTERS[f]}
          </button>
        ))}
        <span className="priority-filter">
          <label htmlFor="priority-filter">Priority</label>
          <select
            id="priority-filter"
            value={priority}
            onChange={(e) => setPriority(Number(e.target.value) as Priority)}
          >
            <option value={Priority.UNSPECIFIED}>Any</option>
            <option value={Priority.P1}>P1</option>
            <option value={Priority.P2}>P2</option>
            <option value={Priority.P3}>P3</option>
            <option value={Priority.P4}>P4</option>
          </select>
        </span>
      </fieldset>
      <div role="status" className="status-line">
        {status}
        {pendingDeletes.map((t) => (
          <button key={t.id} type="button" className="link" onClick={() => undo(t.id)}>
            Undo delete of “{t.title}”
          </button>
        ))}
      </div>
      <ProblemMessage message={problem} />
      {list.isPending && <p>Loading tasks…</p>}
      {list.isError && <ProblemMessage message={`Could not load tasks: ${describeError(list.error).message}`} />}
      {list.isSuccess && tasks.length === 0 && <p className="empty">No {FILTERS[filter].toLowerCase()} tasks.</p>}
      <ul className="tasks" aria-label={`${FILTERS[filter]} tasks`}>
        {tasks
          .filter((t) => !deleted.has(t.id))
          .map((t) => {
            const done = t.status === TaskStatus.COMPLETED || completing.has(t.id);
            const dueMs = tsMs(t.dueTime);
            const overdue = !done && dueMs !== undefined && dueMs < Date.now();
            return (
              <li key={t.id} className={done ? "task done" : "task"} data-task-id={t.id}>
                <div className="task-main">
                  <h2 className="task-title">
                    {/* P4 is "no particular priority": no badge, the title alone. */}
                    {t.priority !== Priority.UNSPECIFIED && t.priority !== Priority.P4 && (
                      <>
                        <span className={`priority p${t.priority}`}>P{t.priority}</span>{" "}
                      </>
                    )}
                    {t.title}
                  </h2>
                  {t.notes && <p className="notes">{t.notes}</p>}
                  <p className="meta">
                    {dueMs !== undefined && (
                      <span className={overdue ? "overdue" : undefined}>
                        {overdue ? "Overdue: " : "Due "}
                        <time dateTime={new Date(dueMs).toISOString()}>{formatInstant(dueMs, t.timeZone || zone)}</time>
                      </span>
                    )}
                    {t.recurrenceRule && (
                      <span>
                        {" "}
                        · Repeats {preview(t.recurrenceRule, dueMs, t.timeZone || zone, 0)?.text ?? t.recurrenceRule}
                      </span>
                    )}
                    {t.reminderOffsets.length > 0 && (
                      <span>
                        {" "}
                        · Reminders {t.reminderOffsets.map((d) => `${Number(d.seconds) / 60} min`).join(", ")} before
                      </span>
                    )}
                  </p>
                </div>
                <div className="task-actions">
                  {!done && (
                    <button type="button" onClick={() => complete(t)} aria-label={`Complete “${t.title}”`}>
                      Complete
                    </button>
                  )}
                  {t.status === TaskStatus.COMPLETED && (
                    <button type="button" onClick={() => reopen(t)} aria-label={`Reopen “${t.title}”`}>
                      Reopen
                    </button>
                  )}
                  <button
                    type="button"
                    className="secondary"
                    onClick={(e) => {
                      opener.current = e.currentTarget;
                      setEditing(t);
                    }}
                    aria-label={`Edit “${t.title}”`}
                  >
                    Edit
                  </button>
                  <button type="button" className="danger" onClick={() => remove(t)} aria-label={`Delete “${t.title}”`}>
                    Delete
                  </button>
                </div>
              </li>
            );
          })}
      </ul>
      {list.hasNextPage && (
        <button
          type="button"
          className="secondary"
          onClick={() => list.fetchNextPage()}
          disabled={list.isFetchingNextPage}
        >
          {list.isFetchingNextPage ? "Loading…" : "Load more"}
        </button>
      )}
      {editing && (
        <TaskForm
          task={editing === "new" ? undefined : editing}
          zone={zone}
          onDone={(saved) => {
            setEditing(undefined);
            if (saved) {
              setStatus(editing === "new" ? `Created “${saved.title}”.` : `Saved “${saved.title}”.`);
              void refresh();
            }
            opener.current?.focus();
          }}
        />
      )}
    </section>
  );
}
