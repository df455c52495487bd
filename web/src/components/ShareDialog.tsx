import { type Project, type ProjectMember, ProjectRole } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { useCallback, useEffect, useId, useRef, useState } from "react";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";

export const ROLE_NAMES: Record<ProjectRole, string> = {
  [ProjectRole.UNSPECIFIED]: "member",
  [ProjectRole.VIEWER]: "viewer",
  [ProjectRole.EDITOR]: "editor",
  [ProjectRole.OWNER]: "owner",
};

interface Props {
  project: Project;
  onClose(): void;
}

/**
 * Sharing one of the caller's projects: invite by email as editor or viewer (InviteToProject), the
 * members (ListMembers) with remove for each (RemoveMember). Only the owner opens it.
 */
export function ShareDialog({ project, onClose }: Props) {
  const { api } = useApp();
  const id = useId();
  const dialog = useRef<HTMLDialogElement>(null);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<ProjectRole>(ProjectRole.EDITOR);
  const [members, setMembers] = useState<ProjectMember[]>([]);
  const [status, setStatus] = useState("");
  const [problem, setProblem] = useState("");

  const load = useCallback(async () => {
    try {
      setMembers((await api.tasks.listMembers({ projectId: project.id })).members);
    } catch (err) {
      setProblem(`Could not list the members: ${describeError(err).message}`);
    }
  }, [api, project.id]);

  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    void load();
    return () => d?.close();
  }, [load]);

  const act = async (what: () => Promise<unknown>, done: string, failed: string) => {
    setProblem("");
    try {
      await what();
      setStatus(done);
      await load();
    } catch (err) {
      setProblem(`${failed}: ${describeError(err).message}`);
    }
  };

  return (
    <dialog ref={dialog} aria-labelledby={`${id}-title`} onCancel={onClose} className="task-dialog">
      <h2 id={`${id}-title`}>Share “{project.name}”</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const to = email.trim();
          void act(
            async () => {
              await api.tasks.inviteToProject({ projectId: project.id, email: to, role });
              setEmail("");
            },
            `Invited ${to} as ${ROLE_NAMES[role]}.`,
            "Could not invite",
          );
        }}
      >
        <label htmlFor={`${id}-email`}>Email</label>
        <input
          id={`${id}-email`}
          type="email"
          required
          maxLength={254}
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <label htmlFor={`${id}-role`}>Role</label>
        <select id={`${id}-role`} value={role} onChange={(e) => setRole(Number(e.target.value) as ProjectRole)}>
          <option value={ProjectRole.EDITOR}>Editor (can change tasks)</option>
          <option value={ProjectRole.VIEWER}>Viewer (can only read)</option>
        </select>
        <button type="submit">Invite</button>
      </form>
      <p role="status">{status}</p>
      {problem && <p role="alert">{problem}</p>}
      <h3>Members</h3>
      <ul aria-label={`Members of “${project.name}”`} className="members">
        {members.map((m) => (
          <li key={m.userId}>
            {m.email || m.userId} ({ROLE_NAMES[m.role]})
            {m.role !== ProjectRole.OWNER && (
              <button
                type="button"
                className="link danger-text"
                aria-label={`Remove ${m.email || m.userId}`}
                onClick={() =>
                  void act(
                    () => api.tasks.removeMember({ projectId: project.id, userId: m.userId }),
                    `Removed ${m.email || m.userId}.`,
                    "Could not remove the member",
                  )
                }
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      <button type="button" onClick={onClose}>
        Close
      </button>
    </dialog>
  );
}
