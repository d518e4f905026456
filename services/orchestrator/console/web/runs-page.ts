import { useEffect, useState } from "preact/hooks";
import type { TaskState } from "../../../../schemas/a2a.ts";
import type { RunListReply } from "../../../../schemas/run-read.ts";
import { follow, get, post } from "./api.ts";
import { ErrorNote, StateBadge, stateName, time } from "./format.ts";
import { html } from "./html.ts";
import { linkTo, navigate } from "./router.ts";

const STATES: TaskState[] = [
  "TASK_STATE_SUBMITTED",
  "TASK_STATE_WORKING",
  "TASK_STATE_INPUT_REQUIRED",
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
] as TaskState[];
const PERIODS: Array<{ label: string; ms: number | undefined }> = [
  { label: "any time", ms: undefined },
  { label: "last hour", ms: 3_600_000 },
  { label: "last day", ms: 86_400_000 },
  { label: "last week", ms: 7 * 86_400_000 },
];

/** The runs the caller may read, live: the edge sends the list again whenever a run changes. */
export function RunsPage() {
  const [state, setState] = useState("");
  const [workflow, setWorkflow] = useState("");
  const [period, setPeriod] = useState(0);
  const [list, setList] = useState<RunListReply | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  const [workflows, setWorkflows] = useState<string[]>([]);

  useEffect(() => {
    get<{ workflows: string[] }>("/workflows").then((reply) => setWorkflows(reply.workflows), setProblem);
  }, []);
  useEffect(() => {
    const query = new URLSearchParams();
    if (state !== "") query.set("state", state);
    if (workflow !== "") query.set("workflow", workflow);
    const ms = PERIODS[period]?.ms;
    if (ms !== undefined) query.set("since", new Date(Date.now() - ms).toISOString());
    setList(undefined);
    return follow(
      `/runs/live?${query}`,
      (_event, data) => {
        setList(data as RunListReply);
        setProblem(undefined);
      },
      setProblem,
    );
  }, [state, workflow, period]);

  return html`
    <h1>Runs</h1>
    <${StartRun} workflows=${workflows} />
    <form class="filters" aria-label="Filter runs" onSubmit=${(event: Event) => event.preventDefault()}>
      <label>State
        <select name="state" value=${state} onChange=${(event: Event) => setState((event.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          ${STATES.map((value) => html`<option value=${value}>${stateName(value)}</option>`)}
        </select>
      </label>
      <label>Workflow
        <select name="workflow" value=${workflow} onChange=${(event: Event) => setWorkflow((event.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          ${workflows.map((id) => html`<option value=${id}>${id}</option>`)}
        </select>
      </label>
      <label>Updated
        <select name="since" value=${String(period)} onChange=${(event: Event) => setPeriod(Number((event.target as HTMLSelectElement).value))}>
          ${PERIODS.map((option, index) => html`<option value=${String(index)}>${option.label}</option>`)}
        </select>
      </label>
    </form>
    <${ErrorNote} error=${problem} />
    ${
      list === undefined
        ? html`<p class="loading" aria-live="polite">Loading runs…</p>`
        : html`
          <p class="count" aria-live="polite">${list.total} run${list.total === 1 ? "" : "s"}</p>
          <table class="runs">
            <caption class="visually-hidden">Runs you may read, newest update first</caption>
            <thead><tr><th scope="col">Run</th><th scope="col">Workflow</th><th scope="col">State</th><th scope="col">Started by</th><th scope="col">Updated</th></tr></thead>
            <tbody>
              ${list.runs.map(
                (run) => html`<tr data-run=${run.runId}>
                  <td><a ...${linkTo(`/console/runs/${run.runId}`)}>${run.runId.slice(0, 8)}</a></td>
                  <td>${run.workflowId}${run.workflowVersion === undefined ? "" : ` v${run.workflowVersion}`}</td>
                  <td><${StateBadge} state=${run.state} /></td>
                  <td>${run.startedBy ?? ""}</td>
                  <td>${time(run.updatedAt)}</td>
                </tr>`,
              )}
            </tbody>
          </table>`
    }
  `;
}

/** Starts a registered workflow with a JSON input, then opens the new run. */
function StartRun(props: { workflows: string[] }) {
  const [workflow, setWorkflow] = useState("");
  const [input, setInput] = useState("{}");
  const [problem, setProblem] = useState<unknown>(undefined);
  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      const parsed = JSON.parse(input) as unknown;
      const reply = await post<{ runId: string }>("/runs", {
        workflow: workflow || props.workflows[0],
        input: parsed,
      });
      navigate(`/console/runs/${reply.runId}`);
    } catch (error) {
      setProblem(error);
    }
  };
  return html`
    <details class="start">
      <summary>Start a run</summary>
      <form onSubmit=${submit}>
        <label for="start-workflow">Workflow</label>
        <select id="start-workflow" name="workflow" value=${workflow}
          onChange=${(event: Event) => setWorkflow((event.target as HTMLSelectElement).value)}>
          ${props.workflows.map((id) => html`<option value=${id}>${id}</option>`)}
        </select>
        <label for="start-input">Input (JSON)</label>
        <textarea id="start-input" name="input" rows="3" value=${input}
          onInput=${(event: Event) => setInput((event.target as HTMLTextAreaElement).value)}></textarea>
        <button type="submit">Start</button>
        <${ErrorNote} error=${problem} />
      </form>
    </details>
  `;
}
