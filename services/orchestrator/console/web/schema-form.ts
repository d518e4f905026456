import { useState } from "preact/hooks";
import type { RequestedSchema } from "../../../../schemas/sampling.ts";
import { html } from "./html.ts";

interface Field {
  type: string;
  title?: string;
  description?: string;
  enum?: unknown[];
  default?: unknown;
  items?: { enum?: unknown[] };
}

/**
 * A form built from an MCP server's `requestedSchema` (flat: strings, numbers, integers, booleans,
 * enums and lists of enum values): one labelled control per property, required ones marked.
 */
export function SchemaForm(props: {
  id: string;
  schema: RequestedSchema;
  onSubmit: (data: Record<string, unknown>) => void;
  onDecline: () => void;
}) {
  const fields = Object.entries(props.schema.properties) as Array<[string, Field]>;
  const required = new Set(props.schema.required ?? []);
  const [values, setValues] = useState<Record<string, unknown>>(() =>
    Object.fromEntries(
      fields.flatMap(([name, field]) => (field.default === undefined ? [] : [[name, field.default]])),
    ),
  );
  const set = (name: string, value: unknown) => setValues((old) => ({ ...old, [name]: value }));
  const control = (name: string, field: Field) => {
    const id = `${props.id}-${name}`;
    const label = html`<label for=${id}>${field.title ?? name}${required.has(name) ? " (required)" : ""}</label>`;
    const hint =
      field.description === undefined ? null : html`<small id=${`${id}-hint`}>${field.description}</small>`;
    const described = field.description === undefined ? undefined : `${id}-hint`;
    if (field.type === "boolean") {
      return html`<div class="field"><input type="checkbox" id=${id} aria-describedby=${described} checked=${values[name] === true}
        onChange=${(event: Event) => set(name, (event.target as HTMLInputElement).checked)} /> ${label} ${hint}</div>`;
    }
    if (field.enum !== undefined) {
      return html`<div class="field">${label}<select id=${id} aria-describedby=${described} required=${required.has(name)} value=${String(values[name] ?? "")}
        onChange=${(event: Event) => set(name, (event.target as HTMLSelectElement).value)}>
        <option value="">choose…</option>
        ${field.enum.map((option) => html`<option value=${String(option)}>${String(option)}</option>`)}
      </select>${hint}</div>`;
    }
    if (field.type === "array") {
      const options = field.items?.enum ?? [];
      return html`<fieldset class="field"><legend>${field.title ?? name}</legend>
        ${options.map((option) => {
          const chosen = Array.isArray(values[name]) ? (values[name] as unknown[]) : [];
          return html`<label><input type="checkbox" checked=${chosen.includes(option)}
            onChange=${(event: Event) =>
              set(
                name,
                (event.target as HTMLInputElement).checked
                  ? [...chosen, option]
                  : chosen.filter((item) => item !== option),
              )} /> ${String(option)}</label>`;
        })}${hint}</fieldset>`;
    }
    const numeric = field.type === "number" || field.type === "integer";
    return html`<div class="field">${label}<input id=${id} aria-describedby=${described} type=${numeric ? "number" : "text"}
      step=${field.type === "integer" ? "1" : "any"} required=${required.has(name)} value=${String(values[name] ?? "")}
      onInput=${(event: Event) => {
        const text = (event.target as HTMLInputElement).value;
        set(name, numeric ? (text === "" ? undefined : Number(text)) : text);
      }} />${hint}</div>`;
  };
  return html`<form class="schema-form" onSubmit=${(event: Event) => {
    event.preventDefault();
    props.onSubmit(
      Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined && value !== "")),
    );
  }}>
    ${fields.map(([name, field]) => control(name, field))}
    <div class="actions">
      <button type="submit">Send answer</button>
      <button type="button" class="secondary" onClick=${props.onDecline}>Decline</button>
    </div>
  </form>`;
}
