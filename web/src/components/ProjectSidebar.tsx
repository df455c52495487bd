import { type Project, type ProjectInvitation, ProjectRole } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { useCallback, useEffect, useState } from "react";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";
import { ROLE_NAMES, ShareDialog } from "./ShareDialog";

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
 * deletes the project's tasks too), share, and a form for a new one. Projects shared with the
 * caller follow, with their role and Leave; then invitations waiting for the caller.
 */
export function ProjectSidebar(p: Props) {
  const { api, session } = useApp();
  const [sharing, setSharing] = useState<Project | undefined>();
  const [invitations, setInvitations] = useState<ProjectInvitation[]>([]);
  const loadInvitations = useCallback(async () => {
    try {
      setInvitations((await api.tasks.listInvitations({})).invitations);
    } catch {
      // Not worth a banner: the list is offered again on the next change.
    }
  }, [api]);
  useEffect(() => {
    void loadInvitations();
  }, [loadInvitations]);
  const [name, setName] = useState("");
  const [renaming, setRenaming] = useState<{ id: string; name: string } | undefined>();
  const [confirming, setConfirming] = useState<string | undefined>();

  const act = async (what: () => Promise<unknown>, done: string, failed: string) => {
    try {
      await what();
      p.onChanged(done);
      void loadInvitations();
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
                {pr.role !== ProjectRole.OWNER && pr.role !== ProjectRole.UNSPECIFIED && (
                  <span> (shared, {ROLE_NAMES[pr.role]})</span>
                )}
                {pr.archived && <span className="muted"> (archived)</span>}
              </button>
            )}
            {pr.role !== ProjectRole.OWNER && pr.role !== ProjectRole.UNSPECIFIED && (
              <span className="project-actions">
                <button
                  type="button"
                  className="link"
                  aria-label={`Leave “${pr.name}”`}
                  onClick={() => {
                    if (p.selected === pr.id) p.onSelect("");
                    void act(
                      () => api.tasks.removeMember({ projectId: pr.id, userId: session?.userId ?? "" }),
                      `Left “${pr.name}”.`,
                      "Could not leave the project",
                    );
                  }}
                >
                  Leave
                </button>
              </span>
            )}
            {!pr.inbox &&
              (pr.role === ProjectRole.OWNER || pr.role === ProjectRole.UNSPECIFIED) &&
              renaming?.id !== pr.id && (
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
                    aria-label={`Share “${pr.name}”`}
                    onClick={() => setSharing(pr)}
                  >
                    Share
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
      {invitations.length > 0 && (
        <section aria-label="Invitations">
          <h3>Invitations</h3>
          <ul>
            {invitations.map((inv) => (
              <li key={inv.id}>
                “{inv.projectName}” as {ROLE_NAMES[inv.role]}{" "}
                <button
                  type="button"
                  className="link"
                  aria-label={`Accept the invitation to “${inv.projectName}”`}
                  onClick={() =>
                    void act(
                      async () => {
                        const res = await api.tasks.acceptInvitation({ invitationId: inv.id });
                        if (res.project) p.onSelect(res.project.id);
                      },
                      `Joined “${inv.projectName}”.`,
                      "Could not accept the invitation",
                    )
                  }
                >
                  Accept
                </button>{" "}
                <button
                  type="button"
                  className="link"
                  aria-label={`Decline the invitation to “${inv.projectName}”`}
                  onClick={() =>
                    void act(
                      () => api.tasks.declineInvitation({ invitationId: inv.id }),
                      `Declined the invitation to “${inv.projectName}”.`,
                      "Could not decline the invitation",
                    )
                  }
                >
                  Decline
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
      {sharing && <ShareDialog project={sharing} onClose={() => setSharing(undefined)} />}
      <label className="check">
        <input type="checkbox" checked={p.showArchived} onChange={(e) => p.onShowArchived(e.target.checked)} /> Show
        archived
      </label>
    </nav>
  );
}
