import type { AnyStateMachine, AnyStateNode, StateValue } from "xstate";
import type { GraphNode, RunGraph } from "../../../schemas/console.ts";
import { edgeLabel, stateLabel } from "../mermaid.ts";

/** Where a run is: the machine's state value now, and the steps it went through. */
export interface RunPosition {
  value: StateValue;
  visited: ReadonlySet<string>;
}

/**
 * Pure: the compiled machine as nodes and edges (the same states and transitions `loom workflow
 * graph` draws), each node marked `current` when the run is in it and `past` when it went through.
 */
export function runGraph(machine: Pick<AnyStateMachine, "root">, position: RunPosition): RunGraph {
  const root = machine.root as AnyStateNode;
  const current = new Set<string>();
  const enter = (node: AnyStateNode, value: StateValue) => {
    current.add(node.id);
    if (typeof value === "string") {
      const child = node.states[value] as AnyStateNode | undefined;
      if (child !== undefined) current.add(child.id);
      return;
    }
    for (const [key, inner] of Object.entries(value)) {
      const child = node.states[key] as AnyStateNode | undefined;
      if (child !== undefined && inner !== undefined) enter(child, inner as StateValue);
    }
  };
  enter(root, position.value);

  const nodes: GraphNode[] = [];
  const edges: RunGraph["edges"] = [];
  const visit = (node: AnyStateNode, parent: AnyStateNode | undefined): boolean => {
    const children = Object.values(node.states) as AnyStateNode[];
    const index = nodes.length;
    nodes.push({
      id: node.id,
      label: stateLabel(node),
      ...(parent === undefined ? {} : { parent: parent.id }),
      kind: node.type === "history" ? "atomic" : node.type,
      mark: "none",
    });
    let past = position.visited.has(stateLabel(node));
    for (const child of children) past = visit(child, node) || past;
    for (const [event, transitions] of node.transitions) {
      for (const transition of transitions) {
        for (const target of transition.target ?? []) {
          edges.push({ from: node.id, to: target.id, label: edgeLabel(event, transition.guard) });
        }
      }
    }
    for (const transition of node.always ?? []) {
      for (const target of transition.target ?? []) edges.push({ from: node.id, to: target.id, label: "" });
    }
    const mark = current.has(node.id) ? "current" : past ? "past" : "none";
    (nodes[index] as GraphNode).mark = mark;
    return mark !== "none";
  };
  for (const child of Object.values(root.states) as AnyStateNode[]) visit(child, undefined);
  return { nodes, edges };
}
