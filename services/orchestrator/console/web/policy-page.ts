import { useState } from "preact/hooks";
import type { ConsoleMe } from "../../../../schemas/console.ts";
import type { PolicyAction, PolicyExplanation } from "../../../../schemas/policy.ts";
import { post } from "./api.ts";
import { ErrorNote } from "./format.ts";
import { html } from "./html.ts";

const ACTIONS: PolicyAction[] = [
  "tools.call",
  "resources.read",
  "prompts.get",
  "workflow.start",
  "runs.read",
  "runs.approve",
  "runs.cancel",
  "audit.read",
] as PolicyAction[];
const WORKFLOW_ACTIONS = new Set(["workflow.start", "runs.read", "runs.approve", "runs.cancel"]);

/** `loom policy explain` as a form: how every rule judges a request of the signed-in principal. */
export function PolicyPage(props: { me: ConsoleMe }) {
  const [action, setAction] = useState<PolicyAction>("tools.call" as PolicyAction);
  const [target, setTarget] = useState("crm.get_contact");
  const [args, setArgs] = useState("{}");
  const [explanation, setExplanation] = useState<PolicyExplanation | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  const explain = async (event: Event) => {
    event.preventDefault();
    try {
      const argumentsValue = JSON.parse(args) as Record<string, unknown>;
      const resource =
        target === "" ? {} : WORKFLOW_ACTIONS.has(action) ? { workflow: target } : { tool: target };
      setExplanation(
        await post<PolicyExplanation>("/policy/explain", {
          action,
          resource,
          ...(action === "tools.call" ? { arguments: argumentsValue } : {}),
        }),
      );
      setProblem(undefined);
    } catch (error) {
      setProblem(error);
    }
  };
  return html`
    <h1>Policy</h1>
    <p class="hint">Explains a request as ${props.me.id} (${props.me.roles.join(", ")}) would make it: nothing is granted or counted.</p>
    <form class="explain" onSubmit=${explain}>
      <label for="action">Action</label>
      <select id="action" value=${action} onChange=${(event: Event) => setAction((event.target as HTMLSelectElement).value as PolicyAction)}>
        ${ACTIONS.map((name) => html`<option value=${name}>${name}</option>`)}
      </select>
      <label for="target">${WORKFLOW_ACTIONS.has(action) ? "Workflow" : "Tool (server.tool)"}</label>
      <input id="target" value=${target} onInput=${(event: Event) => setTarget((event.target as HTMLInputElement).value)} />
      <label for="arguments">Arguments (JSON, for tools.call)</label>
      <textarea id="arguments" rows="3" value=${args} onInput=${(event: Event) => setArgs((event.target as HTMLTextAreaElement).value)}></textarea>
      <button type="submit">Explain</button>
    </form>
    <${ErrorNote} error=${problem} />
    ${
      explanation === undefined
        ? null
        : html`<section aria-labelledby="decision-heading">
            <h2 id="decision-heading">Decision: <span data-testid="decision" class=${explanation.decision.effect === "allow" ? "ok" : "error"}>${explanation.decision.effect}</span> by <code>${explanation.decision.rule}</code></h2>
            <p>${explanation.decision.reason}</p>
            <table>
              <thead><tr><th scope="col">Rule</th><th scope="col">Effect</th><th scope="col">Matched</th><th scope="col">Why</th></tr></thead>
              <tbody>
                ${explanation.rules.map(
                  (rule) =>
                    html`<tr class=${rule.matched ? "matched" : ""}><th scope="row"><code>${rule.name}</code></th><td>${rule.effect}</td><td>${rule.matched ? "yes" : "no"}</td><td>${rule.why}</td></tr>`,
                )}
              </tbody>
            </table>
          </section>`
    }
  `;
}
