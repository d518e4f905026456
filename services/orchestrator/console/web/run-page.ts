import { useEffect, useState } from "preact/hooks";
import type { RunGraph, RunTrace } from "../../../../schemas/console.ts";
import type { RunEvent } from "../../../../schemas/run.ts";
import type { RunRerunReply, RunView, StepView } from "../../../../schemas/run-read.ts";
import { type ApiError, follow, get, post } from "./api.ts";
import { textOf } from "./event-text.ts";
import { duration, ErrorNote, Json, StateBadge, time } from "./format.ts";
import { GraphView } from "./graph-view.ts";
import { html } from "./html.ts";
import { linkTo, navigate } from "./router.ts";
import { Waterfall } from "./waterfall.ts";

const ENDED = new Set([
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
]);

/** One run, live: its view and events come over one stream that the edge decides for the caller. */
export function RunPage(props: { runId: string }) {
  const [run, setRun] = useState<RunView | undefined>(undefined);
  const [events, setEvents] = useState<RunEvent[]>([]);
  const [refused, setRefused] = useState<ApiError | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);

  useEffect(
    () =>
      follow(
        `/runs/${encodeURIComponent(props.runId)}/events`,
        (event, data) => {
          if (event === "run") setRun(data as RunView);
          if (event === "events") setEvents((seen) => [...seen, ...(data as { events: RunEvent[] }).events]);
        },
        setRefused,
      ),
    [props.runId],
  );

  if (refused !== undefined) {
    return html`<h1>Run ${props.runId}</h1>
      <p role="alert" class="error" data-status=${refused.status}>${refused.status} ${refused.code}: ${refused.message}</p>`;
  }
  if (run === undefined) return html`<p class="loading" aria-live="polite">Loading run ${props.runId}…</p>`;
  const ended = ENDED.has(run.state);
  const cancel = async () => {
    try {
      await post(`/runs/${encodeURIComponent(run.runId)}/cancel`, { reason: "canceled from the console" });
    } catch (error) {
      setProblem(error);
    }
  };
  const rerun = async () => {
    try {
      const reply = await post<RunRerunReply>(`/runs/${encodeURIComponent(run.runId)}/rerun`, {});
      navigate(`/console/runs/${reply.runId}`);
    } catch (error) {
      setProblem(error);
    }
  };
  const rerunnable = run.state === "TASK_STATE_FAILED" || run.state === "TASK_STATE_CANCELED";
  return html`
    <h1>${run.workflowId}${run.workflowVersion === undefined ? "" : ` v${run.workflowVersion}`} <small>run ${run.runId}</small></h1>
    <dl class="facts">
      <dt>State</dt><dd aria-live="polite" data-testid="run-state"><${StateBadge} state=${run.state} /></dd>
      <dt>Started by</dt><dd>${run.startedBy ?? "unknown"}</dd>
      <dt>Created</dt><dd>${time(run.createdAt)}</dd>
      <dt>Updated</dt><dd>${time(run.updatedAt)}</dd>
      ${run.deadlineAt === undefined ? null : html`<dt>Deadline</dt><dd>${time(run.deadlineAt)}</dd>`}
      ${run.rerunOf === undefined ? null : html`<dt>Rerun of</dt><dd><a ...${linkTo(`/console/runs/${run.rerunOf.runId}`)}>${run.rerunOf.runId}</a> from <code>${run.rerunOf.from}</code></dd>`}
      ${(run.rerunAs ?? []).length === 0 ? null : html`<dt>Rerun as</dt><dd>${(run.rerunAs ?? []).map((id) => html`<a ...${linkTo(`/console/runs/${id}`)}>${id.slice(0, 8)}</a> `)}</dd>`}
    </dl>
    <div class="actions">
      ${ended ? null : html`<button type="button" onClick=${cancel}>Cancel run</button>`}
      ${rerunnable ? html`<button type="button" onClick=${rerun}>Rerun from where it stopped</button>` : null}
      ${run.state === "TASK_STATE_INPUT_REQUIRED" ? html`<a ...${linkTo("/console/inbox")}>Answer in the approvals inbox</a>` : null}
      <a ...${linkTo(`/console/audit?run=${encodeURIComponent(run.runId)}`)}>Audit trail</a>
    </div>
    <${ErrorNote} error=${problem} />
    <section aria-labelledby="steps-heading">
      <h2 id="steps-heading">Steps</h2>
      <${Timeline} steps=${run.steps} />
    </section>
    <section class="io" aria-label="Input and output">
      <div><h2>Input</h2><${Json} value=${run.input} label="Input" /></div>
      <div>
        <h2>${run.error === undefined ? "Output" : "Error"}</h2>
        ${
          run.error !== undefined
            ? html`<${Json} value=${run.error} label="Error" />`
            : run.output === undefined
              ? html`<p class="hint">No output yet.</p>`
              : html`<${Json} value=${run.output} label="Output" />`
        }
      </div>
    </section>
    <${RunGraphSection} runId=${run.runId} version=${`${run.state}:${events.length}`} />
    <${TraceSection} runId=${run.runId} ended=${ended} />
    <section aria-labelledby="events-heading">
      <h2 id="events-heading">Events</h2>
      <ol class="events" aria-live="polite" data-testid="events">
        ${events.map((event) => {
          if ("artifactUpdate" in event)
            return html`<li><span class="when"></span> artifact ${event.artifactUpdate.artifact.name ?? ""}</li>`;
          const { status, metadata } = event.statusUpdate;
          return html`<li>
            <span class="when">${time(status.timestamp)}</span>
            <${StateBadge} state=${status.state} />
            ${metadata?.stepId === undefined ? null : html`<code>${metadata.stepId}</code>`}
            <span>${textOf(event)}</span>
          </li>`;
        })}
      </ol>
    </section>
  `;
}

/** The run's steps as `loom runs get` shows them: state, attempts, start, duration, last error. */
function Timeline(props: { steps: StepView[] }) {
  if (props.steps.length === 0) return html`<p class="hint">No step has started yet.</p>`;
  return html`<table class="timeline">
    <thead><tr><th scope="col">Step</th><th scope="col">Kind</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Error</th></tr></thead>
    <tbody>
      ${props.steps.map(
        (step) => html`<tr data-step=${step.stepId} data-state=${step.state}>
          <th scope="row"><code>${step.parent === undefined ? "" : "↳ "}${step.stepId}</code></th>
          <td>${step.kind}${step.target === undefined ? "" : html` <code>${step.target}</code>`}</td>
          <td><span class=${`step step-${step.state}`}>${step.state}</span>${step.reusedFrom === undefined ? "" : ` (reused from ${step.reusedFrom.slice(0, 8)})`}</td>
          <td>${step.attempts}</td>
          <td>${time(step.startedAt)}</td>
          <td>${step.durationMs === undefined ? "" : duration(step.durationMs)}</td>
          <td class="error-text">${step.error === undefined ? "" : `${step.error.code}: ${step.error.message}`}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** The workflow's graph, fetched again whenever the run moves. */
function RunGraphSection(props: { runId: string; version: string }) {
  const [graph, setGraph] = useState<RunGraph | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  useEffect(() => {
    get<RunGraph>(`/runs/${encodeURIComponent(props.runId)}/graph`).then(setGraph, setProblem);
  }, [props.runId, props.version]);
  return html`<section aria-labelledby="graph-heading">
    <h2 id="graph-heading">Graph</h2>
    <${ErrorNote} error=${problem} />
    ${graph === undefined ? null : html`<${GraphView} graph=${graph} />`}
  </section>`;
}

function TraceSection(props: { runId: string; ended: boolean }) {
  const [trace, setTrace] = useState<RunTrace | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  const load = () =>
    get<RunTrace>(`/runs/${encodeURIComponent(props.runId)}/trace`).then(setTrace, setProblem);
  useEffect(() => {
    void load();
  }, [props.runId, props.ended]);
  return html`<section aria-labelledby="trace-heading">
    <h2 id="trace-heading">Trace</h2>
    <${ErrorNote} error=${problem} />
    ${
      trace === undefined
        ? null
        : html`<p>
            ${trace.traceId === undefined ? "This run carries no trace context." : html`Trace <code>${trace.traceId}</code>`}
            ${trace.jaeger === undefined ? null : html` · <a href=${trace.jaeger} target="_blank" rel="noreferrer">Open in Jaeger</a>`}
            · <button type="button" class="link" onClick=${load}>Refresh</button>
          </p>
          ${trace.spans.length === 0 ? html`<p class="hint">No spans yet: services publish them a few seconds after they end.</p>` : html`<${Waterfall} spans=${trace.spans} />`}`
    }
  </section>`;
}
