import type { Label } from "@taskmesh/gen/taskmesh/tasks/v1/task_pb";
import { useState } from "react";
import { useApp } from "../lib/app-context";
import { describeError } from "../lib/errors";

interface Props {
  labels: Label[];
  /** The label tasks are filtered by, or "". */
  selected: string;
  onSelect(labelId: string): void;
  onChanged(message: string): void;
  onProblem(message: string): void;
}

/** The user's labels as chips: one filters the list (pressed again: no filter); add and delete labels. */
export function LabelFilter(p: Props) {
  const { api } = useApp();
  const [name, setName] = useState("");
  return (
    <fieldset className="filters labels">
      <legend className="sr-only">Filter by label</legend>
      {p.labels.map((l) => (
        <span key={l.id} className="label-chip-group">
          <button
            type="button"
            className={p.selected === l.id ? "chip label on" : "chip label"}
            aria-pressed={p.selected === l.id}
            onClick={() => p.onSelect(p.selected === l.id ? "" : l.id)}
          >
            #{l.name}
          </button>
          <button
            type="button"
            className="link"
            aria-label={`Delete label “${l.name}”`}
            onClick={async () => {
              try {
                await api.tasks.deleteLabel({ labelId: l.id });
                if (p.selected === l.id) p.onSelect("");
                p.onChanged(`Deleted the label “${l.name}”.`);
              } catch (err) {
                p.onProblem(`Could not delete the label: ${describeError(err).message}`);
              }
            }}
          >
            ×
          </button>
        </span>
      ))}
      <form
        className="inline-form"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await api.tasks.createLabel({ name });
            p.onChanged(`Created the label “${name}”.`);
            setName("");
          } catch (err) {
            p.onProblem(`Could not create the label: ${describeError(err).message}`);
          }
        }}
      >
        <label htmlFor="new-label" className="sr-only">
          New label
        </label>
        <input
          id="new-label"
          placeholder="New label"
          value={name}
          maxLength={60}
          required
          onChange={(e) => setName(e.target.value)}
        />
        <button type="submit" className="secondary">
          Add label
        </button>
      </form>
    </fieldset>
  );
}
