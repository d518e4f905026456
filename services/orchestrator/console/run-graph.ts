import type { AnyStateMachine, AnyStateNode, StateValue } from "xstate";
import type { GraphNode, RunGraph } from "../../../schemas/console.ts";
import { edgeLabel, stateLabel } from "../mermaid.ts";

/** A state the compiler made for a step (`s:`), a parallel branch (`b:`) or a compensation step (`c:`). */
const STEP_KEY = /^[sbc]:/;

/** Where a run is: the machine's state value now, and the steps it went through. */
export interface RunPosition {
  value: StateValue;
  visited: ReadonlySet<string>;
}

/**
 * Pure: the compiled machine as steps and the transitions between them (what `loom workflow graph`
 * draws, each step's inner states folded into it), each step marked `current` when the run is in
 * it and `past` when it went through.
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

  // The compiler wraps each step in states of its own (`run`, `work`, `waiting`…): a step is drawn
  // as one node, and what its inner states do is drawn as the step's.
  const isStep = (node: AnyStateNode) => node.parent === root || STEP_KEY.test(node.key);
  const stepOf = (node: AnyStateNode): AnyStateNode => {
    let at: AnyStateNode = node;
    while (!isStep(at) && at.parent !== undefined) at = at.parent;
    return at;
  };
  const nodes: GraphNode[] = [];
  const marks = new Map<string, GraphNode["mark"]>();
  const edges = new Map<string, RunGraph["edges"][number]>();
  const edge = (from: AnyStateNode, to: AnyStateNode, label: string) => {
    const source = stepOf(from);
    const target = stepOf(to);
    if (source === target) return;
    const key = `${source.id}\u0000${target.id}\u0000${label}`;
    edges.set(key, { from: source.id, to: target.id, label });
  };
  const visit = (node: AnyStateNode, parentStep: AnyStateNode | undefined) => {
    const step = isStep(node);
    if (step) {
      nodes.push({
        id: node.id,
        label: stateLabel(node),
        ...(parentStep === undefined ? {} : { parent: parentStep.id }),
        kind: node.type === "history" ? "atomic" : node.type,
        mark: "none",
      });
    }
    const owner = step ? node : stepOf(node);
    const mark = current.has(node.id) ? "current" : position.visited.has(stateLabel(node)) ? "past" : "none";
    if (mark === "current" || (mark === "past" && marks.get(owner.id) !== "current"))
      marks.set(owner.id, mark);
    for (const [event, transitions] of node.transitions) {
      for (const transition of transitions) {
        for (const target of transition.target ?? []) edge(node, target, edgeLabel(event, transition.guard));
      }
    }
    for (const transition of node.always ?? []) {
      for (const target of transition.target ?? []) edge(node, target, "");
    }
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child, step ? node : parentStep);
  };
  for (const child of Object.values(root.states) as AnyStateNode[]) visit(child, undefined);
  // A step whose inner steps the run went through was gone through too.
  for (const node of [...nodes].reverse()) {
    const mark = marks.get(node.id) ?? "none";
    node.mark = mark;
    if (node.parent !== undefined && mark !== "none" && marks.get(node.parent) === undefined) {
      marks.set(node.parent, "past");
    }
  }
  return { nodes, edges: [...edges.values()] };
}
