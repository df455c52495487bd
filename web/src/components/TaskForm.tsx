import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Label, Priority, type Task } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { useEffect, useId, useMemo, useRef, useState } from "react";
import { useApp } from "../lib/app-context";
import { describeError, type Problem } from "../lib/errors";
import { type Frequency, fromRule, preview, toRule, WEEKDAYS } from "../lib/recurrence";
import { fromLocalInput, isValidZone, msTs, toLocalInput, tsMs } from "../lib/time";
import { FieldError, ProblemMessage } from "./FieldError";

const ZONES: string[] = (() => {
  try {
    return (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf("timeZone");
  } catch {
    return [];
  }
})();

function newKey(): string {
  return (
    crypto.randomUUID?.() ?? Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16)).join("")
  );
}

/** "10, 60" minutes before due → seconds; undefined entries are reported. */
function parseReminders(text: string): { seconds: number[]; error?: string } {
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const seconds: number[] = [];
  for (const i of items) {
    const n = Number(i);
    if (!Number.isFinite(n) || n < 0 || n > 43_200)
      return { seconds, error: `"${i}" is not a number of minutes between 0 and 43200 (30 days).` };
    seconds.push(Math.round(n * 60));
  }
  return { seconds };
}

interface Props {
  task?: Task;
  zone: string;
  /** Where a new task goes; "" (or absent) = the Inbox. */
  projectId?: string;
  /** The user's labels, offered as checkboxes. */
  labels?: Label[];
  onDone(task: Task | undefined): void;
}

/** Create or edit a task, in a modal dialog (focus kept inside; Escape closes; focus returns to the opener). */
export function TaskForm({ task, zone: userZone, projectId = "", labels = [], onDone }: Props) {
  const { api } = useApp();
  const id = useId();
  const dialog = useRef<HTMLDialogElement>(null);
  const idempotencyKey = useMemo(newKey, []);
  const initialRule = fromRule(task?.recurrenceRule ?? "");
  const [title, setTitle] = useState(task?.title ?? "");
  const [notes, setNotes] = useState(task?.notes ?? "");
  const [priority, setPriority] = useState<Priority>(task?.priority || Priority.P4);
  const [labelIds, setLabelIds] = useState<string[]>(task?.labelIds ?? []);
  const [zone, setZone] = useState(task?.timeZone || userZone);
  const [due, setDue] = useState(() => {
    const ms = tsMs(task?.dueTime);
    return ms === undefined ? "" : toLocalInput(ms, task?.timeZone || userZone);
  });
  const [frequency, setFrequency] = useState<Frequency>(initialRule.frequency);
  const [interval, setIntervalN] = useState(initialRule.interval);
  const [days, setDays] = useState<string[]>(initialRule.days);
  const [custom, setCustom] = useState(initialRule.custom);
  const [reminders, setReminders] = useState(
    (task?.reminderOffsets ?? []).map((d) => String(Number(d.seconds) / 60)).join(", "),
  );
  const [problem, setProblem] = useState<Problem | undefined>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);

  const zoneOk = isValidZone(zone);
  const dueMs = zoneOk ? fromLocalInput(due, zone) : undefined;
  const rule = toRule({ frequency, interval, days, custom });
  const pv = preview(rule, dueMs, zoneOk ? zone : "UTC");
  const rem = parseReminders(reminders);
  const fields = { ...problem?.fields };
  if (rem.error) fields.reminder_offsets = rem.error;
  if (!zoneOk) fields.time_zone = `"${zone}" is not a time zone known to this browser.`;

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (rem.error || !zoneOk) return;
    if (rem.seconds.length > 0 && dueMs === undefined) {
      setProblem({
        message: "Reminders need a due date.",
        fields: { due_time: "Set a due date for reminders." },
        unreachable: false,
      });
      return;
    }
    setBusy(true);
    setProblem(undefined);
    try {
      const offsets = rem.seconds.map((s) => durationFromMs(s * 1000));
      let saved: Task | undefined;
      if (task) {
        const res = await api.tasks.updateTask({
          taskId: task.id,
          title,
          notes,
          ...(dueMs !== undefined ? { dueTime: msTs(dueMs) } : { clearDueTime: true }),
          timeZone: zone,
          recurrenceRule: rule,
          reminderOffsets: { offsets },
          priority,
          labelIds: { labelIds },
        });
        saved = res.task;
      } else {
        const res = await api.tasks.createTask({
          task: {
            title,
            notes,
            ...(dueMs !== undefined ? { dueTime: msTs(dueMs) } : {}),
            timeZone: zone,
            recurrenceRule: rule,
            reminderOffsets: offsets,
            priority,
            projectId,
            labelIds,
          },
          idempotencyKey,
        });
        saved = res.task;
      }
      onDone(saved);
    } catch (err) {
      setProblem(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  const invalid = (f: string) =>
    fields[f] ? { "aria-invalid": true as const, "aria-describedby": `${id}-${f}-error` } : {};

  return (
    <dialog ref={dialog} aria-labelledby={`${id}-title`} onCancel={() => onDone(undefined)} className="task-dialog">
      <form onSubmit={submit} noValidate>
        <h2 id={`${id}-title`}>{task ? "Edit task" : "New task"}</h2>
        <label htmlFor={`${id}-title-input`}>Title</label>
        <input
          id={`${id}-title-input`}
          required
          maxLength={500}
          value={title}
          onChange={(e) => setTitle(e.target.value)}
          {...invalid("title")}
        />
        <FieldError id={`${id}-title`} message={fields.title} />

        <label htmlFor={`${id}-notes`}>Notes</label>
        <textarea
          id={`${id}-notes`}
          rows={3}
          value={notes}
          onChange={(e) => setNotes(e.target.value)}
          {...invalid("notes")}
        />
        <FieldError id={`${id}-notes`} message={fields.notes} />

        <label htmlFor={`${id}-priority`}>Priority</label>
        <select
          id={`${id}-priority`}
          value={priority}
          onChange={(e) => setPriority(Number(e.target.value) as Priority)}
        >
          <option value={Priority.P1}>P1 (highest)</option>
          <option value={Priority.P2}>P2</option>
          <option value={Priority.P3}>P3</option>
          <option value={Priority.P4}>P4 (none)</option>
        </select>

        {labels.length > 0 && (
          <fieldset className="label-choices">
            <legend>Labels</legend>
            {labels.map((l) => (
              <label key={l.id} className="check">
                <input
                  type="checkbox"
                  checked={labelIds.includes(l.id)}
                  onChange={(e) =>
                    setLabelIds((ids) => (e.target.checked ? [...ids, l.id] : ids.filter((x) => x !== l.id)))
                  }
                />{" "}
                {l.name}
              </label>
            ))}
          </fieldset>
        )}

        <div className="row">
          <div>
            <label htmlFor={`${id}-due`}>Due</label>
            <input
              id={`${id}-due`}
              type="datetime-local"
              step={1}
              value={due}
              onChange={(e) => setDue(e.target.value)}
              {...invalid("due_time")}
            />
            <FieldError id={`${id}-due_time`} message={fields.due_time} />
          </div>
          <div>
            <label htmlFor={`${id}-zone`}>Time zone</label>
            <input
              id={`${id}-zone`}
              list={`${id}-zones`}
              value={zone}
              onChange={(e) => setZone(e.target.value)}
              {...invalid("time_zone")}
            />
            <datalist id={`${id}-zones`}>
              {ZONES.map((z) => (
                <option key={z} value={z} />
              ))}
            </datalist>
            <FieldError id={`${id}-time_zone`} message={fields.time_zone} />
          </div>
        </div>

        <fieldset>
          <legend>Repeat</legend>
          <div className="row">
            <div>
              <label htmlFor={`${id}-freq`}>Frequency</label>
              <select id={`${id}-freq`} value={frequency} onChange={(e) => setFrequency(e.target.value as Frequency)}>
                <option value="none">Does not repeat</option>
                <option value="daily">Daily</option>
                <option value="weekly">Weekly</option>
                <option value="monthly">Monthly</option>
                <option value="custom">Custom (RRULE)</option>
              </select>
            </div>
            {frequency !== "none" && frequency !== "custom" && (
              <div>
                <label htmlFor={`${id}-interval`}>Every</label>
                <div className="with-unit">
                  <input
                    id={`${id}-interval`}
                    type="number"
                    min={1}
                    max={365}
                    value={interval}
                    onChange={(e) => setIntervalN(Math.max(1, Number(e.target.value) || 1))}
                    aria-describedby={`${id}-interval-unit`}
                  />
                  <span id={`${id}-interval-unit`} className="hint">
                    {frequency === "daily" ? "day(s)" : frequency === "weekly" ? "week(s)" : "month(s)"}
                  </span>
                </div>
              </div>
            )}
          </div>
          {frequency === "weekly" && (
            <fieldset className="days">
              <legend>On</legend>
              {WEEKDAYS.map((d) => (
                <label key={d.code} className="day">
                  <input
                    type="checkbox"
                    checked={days.includes(d.code)}
                    onChange={(e) => setDays(e.target.checked ? [...days, d.code] : days.filter((x) => x !== d.code))}
                  />
                  {d.label}
                </label>
              ))}
            </fieldset>
          )}
          {frequency === "custom" && (
            <>
              <label htmlFor={`${id}-rule`}>Rule</label>
              <input
                id={`${id}-rule`}
                placeholder="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH"
                value={custom}
                onChange={(e) => setCustom(e.target.value)}
                {...invalid("recurrence_rule")}
              />
            </>
          )}
          <FieldError id={`${id}-recurrence_rule`} message={fields.recurrence_rule} />
          <div aria-live="polite" className="preview" data-testid="recurrence-preview">
            {pv?.error && <p className="field-error">{pv.error}</p>}
            {pv && !pv.error && (
              <>
                <p>
                  Repeats <strong>{pv.text}</strong>
                  <span className="hint"> ({rule})</span>
                </p>
                {pv.next.length > 0 && (
                  <p>
                    Next: <span>{pv.next.join(" · ")}</span>
                  </p>
                )}
              </>
            )}
          </div>
        </fieldset>

        <label htmlFor={`${id}-reminders`}>Reminders (minutes before due, comma-separated)</label>
        <input
          id={`${id}-reminders`}
          inputMode="decimal"
          placeholder="e.g. 10, 60"
          value={reminders}
          onChange={(e) => setReminders(e.target.value)}
          {...invalid("reminder_offsets")}
        />
        <FieldError id={`${id}-reminder_offsets`} message={fields.reminder_offsets} />

        <ProblemMessage message={problem?.message} />
        <div className="actions">
          <button type="submit" disabled={busy}>
            {busy ? "Saving…" : task ? "Save changes" : "Create task"}
          </button>
          <button type="button" className="secondary" onClick={() => onDone(undefined)}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
