import { createConnectQueryKey, useInfiniteQuery, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { Priority, type Task, TaskStatus } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { TaskOrder, TaskService } from "@taskmesh/gen/taskmesh/tasks/v1/tasks_pb";
import { useCallback, useEffect, useRef, useState } from "react";
import { ProblemMessage } from "../components/FieldError";
import { LabelFilter } from "../components/LabelFilter";
import { ProjectSidebar } from "../components/ProjectSidebar";
import { TaskForm } from "../components/TaskForm";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";
import { useProjectWatch } from "../lib/project-watch";
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
  // "" = every task (due order); a project id = that project in its manual order.
  const [projectId, setProjectId] = useState("");
  const [labelId, setLabelId] = useState("");
  const [showArchived, setShowArchived] = useState(false);
  const [subtaskOf, setSubtaskOf] = useState<Task | undefined>();
  const [subtaskTitle, setSubtaskTitle] = useState("");
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

  const projects = useQuery(TaskService.method.listProjects, { includeArchived: showArchived });
  const labels = useQuery(TaskService.method.listLabels, {});
  const labelName = new Map((labels.data?.labels ?? []).map((l) => [l.id, l.name]));
  const list = useInfiniteQuery(
    TaskService.method.listTasks,
    {
      ...request,
      priority,
      projectId,
      labelId,
      includeArchived: showArchived,
      // A project is shown in its manual order (and whole, so subtasks find their parent).
      ...(projectId ? { order: TaskOrder.MANUAL, pageSize: 100 } : { pageSize: 20 }),
      pageToken: "",
    },
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

  // A shared project (members besides its owner) is watched while open: another member's change
  // refetches the lists, so it shows without a reload. An unshared one needs no stream.
  const members = useQuery(TaskService.method.listMembers, { projectId }, { enabled: projectId !== "" });
  const shared = (members.data?.members.length ?? 0) > 1;
  useProjectWatch(shared ? projectId : "", () => void refresh());

  const complete = async (t: Task) => {
    setProblem(undefined);
    setCompleting((s) => new Set(s).add(t.id));
    // A task with open subtasks is completed with them (the API refuses it otherwise).
    const openChildren = (children.get(t.id) ?? []).filter((c) => c.status === TaskStatus.OPEN).length;
    try {
      await api.tasks.completeTask({ taskId: t.id, completeChildren: openChildren > 0 });
      setStatus(
        t.recurrenceRule
          ? `Completed “${t.title}”. The next occurrence is on its way.`
          : openChildren > 0
            ? `Completed “${t.title}” and ${openChildren} subtask${openChildren === 1 ? "" : "s"}.`
            : `Completed “${t.title}”.`,
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

  /** Moves `t` before or after its neighbour among the siblings shown (one MoveTask). */
  const move = async (t: Task, siblings: Task[], by: -1 | 1) => {
    const i = siblings.findIndex((x) => x.id === t.id);
    const n = siblings[i + by];
    if (!n) return;
    setProblem(undefined);
    try {
      await api.tasks.moveTask(by < 0 ? { taskId: t.id, beforeTaskId: n.id } : { taskId: t.id, afterTaskId: n.id });
      setStatus(`Moved “${t.title}” ${by < 0 ? "up" : "down"}.`);
      await refresh();
    } catch (err) {
      setProblem(`Could not move “${t.title}”: ${describeError(err).message}`);
    }
  };

  const addSubtask = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!subtaskOf) return;
    try {
      await api.tasks.createTask({ task: { title: subtaskTitle, parentId: subtaskOf.id } });
      setStatus(`Added the subtask “${subtaskTitle}” to “${subtaskOf.title}”.`);
      setSubtaskOf(undefined);
      setSubtaskTitle("");
      await refresh();
    } catch (err) {
      setProblem(`Could not add the subtask: ${describeError(err).message}`);
    }
  };

  const changed = (message: string) => {
    setProblem(undefined);
    setStatus(message);
    void refresh();
  };

  const tasks = (list.data?.pages ?? []).flatMap((p) => p.tasks);
  const pendingDeletes = tasks.filter((t) => deleted.has(t.id));
  const shown = tasks.filter((t) => !deleted.has(t.id));
  const shownIds = new Set(shown.map((t) => t.id));
  // Subtasks under their parent when it is listed too; otherwise in the list on their own.
  const children = new Map<string, Task[]>();
  for (const t of shown)
    if (t.parentId && shownIds.has(t.parentId)) children.set(t.parentId, [...(children.get(t.parentId) ?? []), t]);
  const topLevel = shown.filter((t) => !(t.parentId && shownIds.has(t.parentId)));

  const renderTask = (t: Task, siblings: Task[]) => {
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
          {t.labelIds.length > 0 && (
            <p className="task-labels">
              {t.labelIds.map((l) => (
                <span key={l} className="label-chip">
                  #{labelName.get(l) ?? "label"}
                </span>
              ))}
            </p>
          )}
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
          {projectId && (
            <>
              <button
                type="button"
                className="secondary"
                aria-label={`Move “${t.title}” up`}
                disabled={siblings[0]?.id === t.id}
                onClick={() => move(t, siblings, -1)}
              >
                ↑
              </button>
              <button
                type="button"
                className="secondary"
                aria-label={`Move “${t.title}” down`}
                disabled={siblings.at(-1)?.id === t.id}
                onClick={() => move(t, siblings, 1)}
              >
                ↓
              </button>
            </>
          )}
          {!t.parentId && t.status === TaskStatus.OPEN && (
            <button
              type="button"
              className="secondary"
              aria-label={`Add a subtask to “${t.title}”`}
              onClick={() => {
                setSubtaskTitle("");
                setSubtaskOf(t);
              }}
            >
              + Subtask
            </button>
          )}
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
        {(children.get(t.id)?.length ?? 0) > 0 && (
          <ul className="tasks subtasks" aria-label={`Subtasks of “${t.title}”`}>
            {(children.get(t.id) ?? []).map((c) => renderTask(c, children.get(t.id) ?? []))}
          </ul>
        )}
        {subtaskOf?.id === t.id && (
          <form className="inline-form subtask-form" onSubmit={addSubtask}>
            <label htmlFor={`subtask-${t.id}`}>Subtask of “{t.title}”</label>
            <input
              id={`subtask-${t.id}`}
              value={subtaskTitle}
              maxLength={500}
              required
              onChange={(e) => setSubtaskTitle(e.target.value)}
            />
            <button type="submit">Add</button>
            <button type="button" className="secondary" onClick={() => setSubtaskOf(undefined)}>
              Cancel
            </button>
          </form>
        )}
      </li>
    );
  };

  const current = (projects.data?.projects ?? []).find((p) => p.id === projectId);
  return (
    <div className="tasks-layout">
      <ProjectSidebar
        projects={projects.data?.projects ?? []}
        selected={projectId}
        onSelect={(id) => {
          setProjectId(id);
          setSubtaskOf(undefined);
        }}
        showArchived={showArchived}
        onShowArchived={setShowArchived}
        onChanged={(m) => {
          changed(m);
          void projects.refetch();
        }}
        onProblem={setProblem}
      />
      <section aria-labelledby="tasks-h" className="tasks-main">
        <div className="heading-row">
          <h1 id="tasks-h" tabIndex={-1}>
            {current ? current.name : "Tasks"}
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
        <LabelFilter
          labels={labels.data?.labels ?? []}
          selected={labelId}
          onSelect={setLabelId}
          onChanged={(m) => {
            changed(m);
            void labels.refetch();
          }}
          onProblem={setProblem}
        />
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
          {topLevel.map((t) => renderTask(t, topLevel))}
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
            projectId={projectId}
            labels={labels.data?.labels ?? []}
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
    </div>
  );
}
