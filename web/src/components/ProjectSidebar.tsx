import type { Project } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { useState } from "react";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";

interface Props {
  projects: Project[];
  /** The selected project id, or "" for every task (the due-date views). */
  selected: string;
  onSelect(projectId: string): void;
  showArchived: boolean;
  onShowArchived(show: boolean): void;
  /** After a change: reload projects (and tasks). */
  onChanged(message: string): void;
  onProblem(message: string): void;
}

/**
 * The project list: "All tasks", then the Inbox (always first, not editable), then the user's
 * projects in their order, each with rename, archive and delete (a delete asks to confirm, since it
 * deletes the project's tasks too), and a form for a new one.
 */
export function ProjectSidebar(p: Props) {
  const { api } = useApp();
  const [name, setName] = useState("");
  const [renaming, setRenaming] = useState<{ id: string; name: string } | undefined>();
  const [confirming, setConfirming] = useState<string | undefined>();

  const act = async (what: () => Promise<unknown>, done: string, failed: string) => {
    try {
      await what();
      p.onChanged(done);
    } catch (err) {
      p.onProblem(`${failed}: ${describeError(err).message}`);
    }
  };

  return (
    <nav aria-label="Projects" className="projects">
      <h2 className="sr-only">Projects</h2>
      <ul>
        <li>
          <button
            type="button"
            className={p.selected === "" ? "project on" : "project"}
            aria-pressed={p.selected === ""}
            onClick={() => p.onSelect("")}
          >
            All tasks
          </button>
        </li>
        {p.projects.map((pr, i) => (
          <li key={pr.id} className={pr.archived ? "archived" : undefined}>
            {renaming?.id === pr.id ? (
              <form
                className="inline-form"
                onSubmit={(e) => {
                  e.preventDefault();
                  setRenaming(undefined);
                  void act(
                    () => api.tasks.updateProject({ projectId: pr.id, name: renaming.name }),
                    `Renamed the project to “${renaming.name}”.`,
                    "Could not rename the project",
                  );
                }}
              >
                <label htmlFor={`rename-${pr.id}`} className="sr-only">
                  New name of “{pr.name}”
                </label>
                <input
                  id={`rename-${pr.id}`}
                  value={renaming.name}
                  maxLength={120}
                  required
                  onChange={(e) => setRenaming({ id: pr.id, name: e.target.value })}
                />
                <button type="submit">Save</button>
              </form>
            ) : (
              <button
                type="button"
                className={p.selected === pr.id ? "project on" : "project"}
                aria-pressed={p.selected === pr.id}
                onClick={() => p.onSelect(pr.id)}
              >
                {pr.name}
                {pr.archived && <span className="muted"> (archived)</span>}
              </button>
            )}
            {!pr.inbox && renaming?.id !== pr.id && (
              <span className="project-actions">
                <button
                  type="button"
                  className="link"
                  aria-label={`Move “${pr.name}” up`}
                  disabled={i <= 1}
                  onClick={() => {
                    const prev = p.projects[i - 1];
                    if (prev && !prev.inbox)
                      void act(
                        () => api.tasks.moveProject({ projectId: pr.id, beforeProjectId: prev.id }),
                        `Moved “${pr.name}” up.`,
                        "Could not move the project",
                      );
                  }}
                >
                  ↑
                </button>
                <button
                  type="button"
                  className="link"
                  aria-label={`Rename “${pr.name}”`}
                  onClick={() => setRenaming({ id: pr.id, name: pr.name })}
                >
                  Rename
                </button>
                <button
                  type="button"
                  className="link"
                  aria-label={`${pr.archived ? "Unarchive" : "Archive"} “${pr.name}”`}
                  onClick={() => {
                    // An archived project leaves the list (unless archived ones are shown): show all tasks.
                    if (!pr.archived && !p.showArchived && p.selected === pr.id) p.onSelect("");
                    void act(
                      () => api.tasks.updateProject({ projectId: pr.id, archived: !pr.archived }),
                      `${pr.archived ? "Unarchived" : "Archived"} “${pr.name}”.`,
                      "Could not change the project",
                    );
                  }}
                >
                  {pr.archived ? "Unarchive" : "Archive"}
                </button>
                {confirming === pr.id ? (
                  <button
                    type="button"
                    className="link danger-text"
                    onClick={() => {
                      setConfirming(undefined);
                      if (p.selected === pr.id) p.onSelect("");
                      void act(
                        () => api.tasks.deleteProject({ projectId: pr.id }),
                        `Deleted “${pr.name}” and its tasks.`,
                        "Could not delete the project",
                      );
                    }}
                  >
                    Confirm delete of “{pr.name}” and its tasks
                  </button>
                ) : (
                  <button
                    type="button"
                    className="link danger-text"
                    aria-label={`Delete “${pr.name}”`}
                    onClick={() => setConfirming(pr.id)}
                  >
                    Delete
                  </button>
                )}
              </span>
            )}
          </li>
        ))}
      </ul>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          const n = name;
          setName("");
          void act(
            async () => {
              const res = await api.tasks.createProject({ name: n });
              if (res.project) p.onSelect(res.project.id);
            },
            `Created the project “${n}”.`,
            "Could not create the project",
          );
        }}
      >
        <label htmlFor="new-project">New project</label>
        <input id="new-project" value={name} maxLength={120} required onChange={(e) => setName(e.target.value)} />
        <button type="submit">Add project</button>
      </form>
      <label className="check">
        <input type="checkbox" checked={p.showArchived} onChange={(e) => p.onShowArchived(e.target.checked)} /> Show
        archived
      </label>
    </nav>
  );
}
