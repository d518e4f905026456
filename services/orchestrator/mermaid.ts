import type { AnyStateMachine, AnyStateNode } from "xstate";

/**
 * The compiled machine as a Mermaid state diagram: every state (compound and parallel ones as
 * nested blocks) and every transition, labelled with its event and guard. What `loom workflow
 * graph` prints, so a definition can be checked by eye before it runs.
 */
export function toMermaid(machine: Pick<AnyStateMachine, "root">): string {
  const lines = ["stateDiagram-v2"];
  const ids = new Map<string, string>();
  const idOf = (node: AnyStateNode) => {
    let id = ids.get(node.id);
    if (id === undefined) {
      id = `n${ids.size}`;
      ids.set(node.id, id);
    }
    return id;
  };

  const declare = (node: AnyStateNode, indent: string) => {
    const children = Object.values(node.states) as AnyStateNode[];
    if (children.length === 0) {
      lines.push(`${indent}state "${stateLabel(node)}" as ${idOf(node)}`);
      if (node.type === "final") lines.push(`${indent}${idOf(node)} --> [*]`);
      return;
    }
    lines.push(`${indent}state "${stateLabel(node)}" as ${idOf(node)} {`);
    children.forEach((child, index) => {
      if (node.type === "parallel" && index > 0) lines.push(`${indent}  --`);
      declare(child, `${indent}  `);
    });
    const initial = node.initial?.target?.[0];
    if (node.type !== "parallel" && initial !== undefined) lines.push(`${indent}  [*] --> ${idOf(initial)}`);
    lines.push(`${indent}}`);
  };
  const root = machine.root as AnyStateNode;
  for (const child of Object.values(root.states) as AnyStateNode[]) declare(child, "  ");
  const first = root.initial?.target?.[0];
  if (first !== undefined) lines.push(`  [*] --> ${idOf(first)}`);

  const edges = (node: AnyStateNode) => {
    for (const [event, transitions] of node.transitions) {
      for (const transition of transitions) {
        for (const target of transition.target ?? []) {
          lines.push(`  ${idOf(node)} --> ${idOf(target)} : ${edgeLabel(event, transition.guard)}`);
        }
      }
    }
    for (const transition of node.always ?? []) {
      for (const target of transition.target ?? []) lines.push(`  ${idOf(node)} --> ${idOf(target)}`);
    }
    for (const child of Object.values(node.states) as AnyStateNode[]) edges(child);
  };
  for (const child of Object.values(root.states) as AnyStateNode[]) edges(child);
  for (const [event, transitions] of root.transitions) {
    for (const transition of transitions) {
      for (const target of transition.target ?? [])
        lines.push(`  note right of ${idOf(target)} : any state on ${event}`);
    }
  }
  return lines.join("\n");
}

/** A state's name as the definition wrote it: the step id without the compiler's prefix. */
export function stateLabel(node: Pick<AnyStateNode, "key">): string {
  return node.key.replace(/^s:/, "").replace(/^[bc]:/, "");
}

/** A transition's label in words: the event, and what its guard means. */
export function edgeLabel(event: string, guard: unknown): string {
  if (event.startsWith("xstate.done.state")) return "all branches done";
  const { type, params } = (typeof guard === "object" && guard !== null ? guard : { type: guard }) as {
    type?: unknown;
    params?: Record<string, unknown>;
  };
  if (type === "isDenied") return "denied by policy";
  if (type === "choseTarget")
    return params?.target === "(next)" ? "no condition held" : `goto ${String(params?.target)}`;
  if (type === "answered") return params?.approved === true ? "approved" : "rejected";
  if (event === "STEP.SUCCEEDED") return "done";
  if (event === "STEP.FAILED") return "failed";
  return event;
}
