import type { RunView, StepView, WaitingInput } from "../../schemas/run-read.ts";
import { formatJson, stateName, table } from "./render.ts";

/** `1.2s`, `340ms`, `2m05s`: a step's duration at a glance. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const seconds = Math.round(ms / 1_000);
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
}

/** What the state column says: `completed (reused from r-1)`, `running for 3.0s`, … */
function stepState(step: StepView, now: number): string {
  if (step.reusedFrom !== undefined) return `${step.state} (reused from ${step.reusedFrom})`;
  if ((step.state === "running" || step.state === "waiting") && step.startedAt !== undefined) {
    return `${step.state} for ${formatDuration(Math.max(0, now - Date.parse(step.startedAt)))}`;
  }
  return step.state;
}

/** Each step of a run as one row: branches and compensation steps indented under their step. */
export function stepTable(steps: StepView[], now = Date.now()): string {
  return table(
    ["STEP", "KIND", "STATE", "ATTEMPTS", "STARTED", "DURATION", "ERROR"],
    steps.map((step) => [
      step.parent === undefined ? step.stepId : `  ${step.stepId}`,
      step.target === undefined ? step.kind : `${step.kind} ${step.target}`,
      stepState(step, now),
      String(step.attempts),
      step.startedAt?.slice(11, 23) ?? "",
      step.durationMs === undefined ? "" : formatDuration(step.durationMs),
      step.error === undefined ? "" : `${step.error.code}: ${step.error.message}`,
    ]),
  );
}

/** What one waiting step asks, who may answer, and the command that answers it. */
function waitingLines(runId: string, ask: WaitingInput): string[] {
  const who =
    ask.roles.length === 0 ? "whoever policy lets answer (runs.approve)" : `roles ${ask.roles.join(", ")}`;
  const how =
    ask.kind === "approval"
      ? "--approve or --reject"
      : ask.kind === "elicitation"
        ? "--data '{…}' or --reject"
        : "--text '…' or --data '{…}'";
  const fields =
    ask.requestedSchema === undefined
      ? []
      : [
          `  fields:   ${Object.entries(ask.requestedSchema.properties)
            .map(
              ([name, field]) =>
                `${name}${ask.requestedSchema?.required?.includes(name) ? "*" : ""} (${field.type})`,
            )
            .join(", ")}`,
        ];
  return [
    `${ask.stepId} (${ask.kind}${ask.server === undefined ? "" : ` from ${ask.server}`}): ${ask.prompt}`,
    ...fields,
    `  who:      ${who}; you ${ask.callerMayAnswer ? "may" : "may not"} answer`,
    `  answer:   loom runs input ${runId} --step ${ask.stepId} ${how}`,
  ];
}

/** `loom runs get` as a person reads it: the run, its steps as a timeline, what it waits for. */
export function renderRunView(run: RunView, now = Date.now()): string {
  const version = run.workflowVersion === undefined ? "" : ` v${run.workflowVersion}`;
  const lines = [
    `run       ${run.runId}`,
    `workflow  ${run.workflowId}${version}`,
    `state     ${stateName(run.state)}`,
    ...(run.startedBy === undefined ? [] : [`started   by ${run.startedBy}`]),
    `created   ${run.createdAt}`,
    `updated   ${run.updatedAt}`,
    ...(run.rerunOf === undefined
      ? []
      : [
          `rerun of  ${run.rerunOf.runId} from step ${run.rerunOf.from}` +
            (run.rerunOf.reused.length === 0 ? "" : ` (reused: ${run.rerunOf.reused.join(", ")})`),
        ]),
    ...(run.rerunAs === undefined ? [] : [`rerun as  ${run.rerunAs.join(", ")}`]),
    ...(run.error === undefined ? [] : [`error     ${run.error.code}: ${run.error.message}`]),
  ];
  if (run.steps.length > 0) lines.push("", stepTable(run.steps, now));
  if (run.waiting.length > 0) {
    lines.push("", "waiting for", ...run.waiting.flatMap((ask) => waitingLines(run.runId, ask)));
  }
  if (run.output !== undefined) lines.push("", `output\n${formatJson(run.output)}`);
  return lines.join("\n");
}
