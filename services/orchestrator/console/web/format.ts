import type { TaskState } from "../../../../schemas/a2a.ts";
import { html } from "./html.ts";

/** A run state in words, without the A2A prefix: `TASK_STATE_INPUT_REQUIRED` is "input required". */
export function stateName(state: TaskState | string): string {
  return state
    .replace(/^TASK_STATE_/, "")
    .replaceAll("_", " ")
    .toLowerCase();
}

/** A state as a badge: its colour says the same as its text, which a screen reader reads. */
export function StateBadge(props: { state: TaskState | string }) {
  const name = stateName(props.state);
  return html`<span class="state state-${name.replaceAll(" ", "-")}" data-state=${name}>${name}</span>`;
}

export function time(iso: string | undefined): string {
  return iso === undefined ? "" : new Date(iso).toLocaleString();
}

export function duration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
}

/** A value as indented JSON, for inputs, outputs and errors. */
export function Json(props: { value: unknown; label: string }) {
  return html`<pre class="json" aria-label=${props.label} tabindex="0">${JSON.stringify(props.value, null, 2)}</pre>`;
}

export function ErrorNote(props: { error: unknown }) {
  if (props.error === undefined) return null;
  const message = props.error instanceof Error ? props.error.message : String(props.error);
  return html`<p role="alert" class="error">${message}</p>`;
}
