import { describe, expect, it } from "vitest";
import type { Workflow } from "../../schemas/workflow.ts";
import { OutboundAllowList, OutboundTargets } from "../../services/orchestrator/a2a/outbound-url.ts";
import { readsMemory } from "../../services/orchestrator/expressions.ts";
import { DEFAULT_LIMITS } from "../../services/orchestrator/limits.ts";
import { WorkflowCatalog } from "../../services/orchestrator/workflow-catalog.ts";

const noDelegates = OutboundAllowList.parse(OutboundTargets.DELEGATE, []);

const workflow = (steps: unknown[], output?: unknown): Workflow =>
  new WorkflowCatalog(DEFAULT_LIMITS, noDelegates).resolve({
    id: "memory-reads",
    steps,
    ...(output === undefined ? {} : { output }),
  });

describe("expressions - which workflows read context memory", () => {
  it.each([
    [
      "a step's argument",
      [{ id: "a", call: "crm.get", with: { last: "{% $memory[-1].output %}" } }],
      undefined,
    ],
    [
      "text with an expression inside",
      [{ id: "a", call: "crm.get", with: { note: "last: {% $count($memory) %}" } }],
      undefined,
    ],
    [
      "a parallel branch",
      [
        {
          id: "p",
          parallel: [
            { id: "b", call: "crm.get" },
            { id: "c", call: "crm.get", with: { m: "{% $memory %}" } },
          ],
        },
      ],
      undefined,
    ],
    [
      "a choice's condition",
      [
        { id: "c", choice: [{ when: "{% $count($memory) > 0 %}", goto: "a" }] },
        { id: "a", call: "crm.get" },
      ],
      undefined,
    ],
    ["the output", [{ id: "a", call: "crm.get" }], "{% $memory %}"],
    [
      "$eval, which sees every binding",
      [{ id: "a", call: "crm.get", with: { m: "{% $eval('$' & 'memory') %}" } }],
      undefined,
    ],
  ])("expressions - a workflow naming $memory in %s reads it", (_where, steps, output) => {
    expect(readsMemory(workflow(steps, output))).toBe(true);
  });

  it("expressions - a workflow whose expressions see only $input and $steps reads no memory", () => {
    const steps = [
      { id: "a", call: "crm.get", with: { id: "{% $input.id %}", memory: "memory is a word here" } },
      { id: "b", call: "crm.get", with: { from: "{% $string($steps.a) %}" } },
    ];
    expect(readsMemory(workflow(steps, "{% $steps.b %}"))).toBe(false);
  });
});
