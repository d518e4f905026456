import type { GraphNode, RunGraph } from "../../../../schemas/console.ts";
import { html } from "./html.ts";

const MARK_TEXT: Record<GraphNode["mark"], string> = { current: "now", past: "done", none: "" };

/**
 * The workflow's machine as nested steps, each with where it leads. The run's current step and the
 * steps it went through are marked in words as well as colour.
 */
export function GraphView(props: { graph: RunGraph }) {
  const { nodes, edges } = props.graph;
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const children = (parent: string | undefined) => nodes.filter((node) => node.parent === parent);
  const item = (node: GraphNode): unknown => {
    const out = edges.filter((edge) => edge.from === node.id);
    const inner = children(node.id);
    return html`<li class=${`node node-${node.kind} mark-${node.mark}`} data-node=${node.label} data-mark=${node.mark}>
      <span class="node-name">${node.label}</span>
      ${node.kind === "parallel" ? html` <small>(in parallel)</small>` : null}
      ${node.mark === "none" ? null : html` <span class="mark">${MARK_TEXT[node.mark]}</span>`}
      ${
        out.length === 0
          ? null
          : html`<ul class="edges">
              ${out.map(
                (edge) =>
                  html`<li>→ ${byId.get(edge.to)?.label ?? edge.to}${edge.label === "" ? "" : html` <small>(${edge.label})</small>`}</li>`,
              )}
            </ul>`
      }
      ${inner.length === 0 ? null : html`<ol class="graph">${inner.map(item)}</ol>`}
    </li>`;
  };
  return html`<ol class="graph" data-testid="graph">${children(undefined).map(item)}</ol>`;
}
