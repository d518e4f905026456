import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runGraph } from "../../services/orchestrator/console/run-graph.ts";
import { machineFor } from "../../services/orchestrator/run-machine.ts";
import { parseWorkflow } from "../../services/orchestrator/workflow-catalog.ts";

const CRM_ENRICH = parseWorkflow(
  parse(readFileSync(join(import.meta.dirname, "../../workflows/crm-enrich.yaml"), "utf8")),
  "crm-enrich.yaml",
);

describe("console - a run's graph from its compiled machine", () => {
  const machine = machineFor(CRM_ENRICH);
  const marks = (graph: ReturnType<typeof runGraph>) =>
    Object.fromEntries(graph.nodes.map((node) => [node.label, node.mark]));

  it("console - draws each step once, inner machine states folded into their step", () => {
    const graph = runGraph(machine, { value: "s:contact", visited: new Set() });
    const labels = graph.nodes.map((node) => node.label);
    for (const step of ["contact", "lookups", "profile", "now", "route", "approve", "summarize"]) {
      expect(labels.filter((label) => label === step)).toHaveLength(1);
    }
    expect(labels).not.toContain("waiting");
    expect(labels).not.toContain("work");
    const byLabel = new Map(graph.nodes.map((node) => [node.id, node.label]));
    expect(graph.nodes.find((node) => node.label === "profile")?.parent).toBe(
      graph.nodes.find((node) => node.label === "lookups")?.id,
    );
    const edges = graph.edges.map(
      (edge) => `${byLabel.get(edge.from)} -> ${byLabel.get(edge.to)} (${edge.label})`,
    );
    expect(edges).toContain("route -> approve (goto approve)");
    expect(edges).toContain("approve -> summarize (approved)");
    expect(edges.every((edge) => !edge.startsWith("undefined") && !edge.includes("-> undefined"))).toBe(true);
  });

  it("console - marks the step a run waits in as current and the steps it went through as past", () => {
    const graph = runGraph(machine, {
      value: { "s:approve": "waiting" },
      visited: new Set(["contact", "profile", "now"]),
    });
    expect(marks(graph)).toMatchObject({
      contact: "past",
      lookups: "past",
      profile: "past",
      now: "past",
      approve: "current",
      summarize: "none",
    });
  });
});
