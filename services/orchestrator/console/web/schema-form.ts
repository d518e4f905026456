import { useState } from "preact/hooks";
import type { RequestedSchema } from "../../../../schemas/sampling.ts";
import { ErrorNote } from "./format.ts";
import { html } from "./html.ts";

/** A titled choice of MCP's enum schemas: `{ const, title }`. */
interface Choice {
  const: unknown;
  title?: string;
}

interface Field {
  type: string;
  title?: string;
  description?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  enum?: unknown[];
  /** The legacy titles of `enum`'s values, in the same order. */
  enumNames?: string[];
  oneOf?: Choice[];
  anyOf?: Choice[];
  default?: unknown;
  items?: { enum?: unknown[]; oneOf?: Choice[]; anyOf?: Choice[] };
}

interface Option {
  value: unknown;
  label: string;
}

/** The choices of an enum schema, plain (`enum`, `enumNames`) or titled (`oneOf`/`anyOf` of consts). */
function optionsOf(field: {
  enum?: unknown[];
  enumNames?: string[];
  oneOf?: Choice[];
  anyOf?: Choice[];
}): Option[] | undefined {
  if (field.enum !== undefined) {
    return field.enum.map((value, index) => ({ value, label: field.enumNames?.[index] ?? String(value) }));
  }
  const titled = field.oneOf ?? field.anyOf;
  return titled?.map((choice) => ({ value: choice.const, label: choice.title ?? String(choice.const) }));
}

/** The input type the browser offers for a string format MCP allows (date-time stays text: RFC 3339). */
const INPUT_TYPES: Record<string, string> = { email: "email", uri: "url", date: "date" };

/**
 * A form built from an MCP server's `requestedSchema` (flat: strings, numbers, integers, booleans,
 * enums plain or titled, and lists of enum values): one labelled control per property, required
 * ones marked, with the constraints the browser can check. What it cannot (list lengths, say) the
 * orchestrator checks against the same schema; its refusal is shown in the form (`error`).
 */
export function SchemaForm(props: {
  id: string;
  schema: RequestedSchema;
  error: unknown;
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
    const title = `${field.title ?? name}${required.has(name) ? " (required)" : ""}`;
    const label = html`<label for=${id}>${title}</label>`;
    const hint =
      field.description === undefined ? null : html`<small id=${`${id}-hint`}>${field.description}</small>`;
    const described = field.description === undefined ? undefined : `${id}-hint`;
    if (field.type === "boolean") {
      return html`<div class="field"><input type="checkbox" id=${id} aria-describedby=${described} checked=${values[name] === true}
        onChange=${(event: Event) => set(name, (event.target as HTMLInputElement).checked)} /> ${label} ${hint}</div>`;
    }
    if (field.type === "array") {
      const options = optionsOf(field.items ?? {}) ?? [];
      const chosen = Array.isArray(values[name]) ? (values[name] as unknown[]) : [];
      return html`<fieldset class="field" aria-describedby=${described}><legend>${title}</legend>
        ${options.map(
          (option) => html`<label><input type="checkbox" checked=${chosen.includes(option.value)}
            onChange=${(event: Event) =>
              set(
                name,
                (event.target as HTMLInputElement).checked
                  ? [...chosen, option.value]
                  : chosen.filter((item) => item !== option.value),
              )} /> ${option.label}</label>`,
        )}${hint}</fieldset>`;
    }
    const options = optionsOf(field);
    if (options !== undefined) {
      return html`<div class="field">${label}<select id=${id} aria-describedby=${described} required=${required.has(name)} value=${String(values[name] ?? "")}
        onChange=${(event: Event) => {
          const index = (event.target as HTMLSelectElement).selectedIndex - 1;
          set(name, options[index]?.value);
        }}>
        <option value="">choose…</option>
        ${options.map((option) => html`<option value=${String(option.value)}>${option.label}</option>`)}
      </select>${hint}</div>`;
    }
    const numeric = field.type === "number" || field.type === "integer";
    const type = numeric ? "number" : (INPUT_TYPES[field.format ?? ""] ?? "text");
    return html`<div class="field">${label}<input id=${id} aria-describedby=${described} type=${type}
      step=${field.type === "integer" ? "1" : "any"} min=${field.minimum} max=${field.maximum}
      minlength=${field.minLength} maxlength=${field.maxLength}
      required=${required.has(name)} value=${String(values[name] ?? "")}
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
    <${ErrorNote} error=${props.error} />
    <div class="actions">
      <button type="submit">Send answer</button>
      <button type="button" class="secondary" onClick=${props.onDecline}>Decline</button>
    </div>
  </form>`;
}
