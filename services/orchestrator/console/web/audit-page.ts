import { useEffect, useState } from "preact/hooks";
import type { AuditReport } from "../../../../schemas/audit.ts";
import type { ConsoleAudit } from "../../../../schemas/console.ts";
import { get } from "./api.ts";
import { ErrorNote, time } from "./format.ts";
import { html } from "./html.ts";
import { navigate } from "./router.ts";

const HOUR = 3_600_000;

/** The audit trail of one run or of a period, and every writer's chain verified. */
export function AuditPage(props: { runId: string | undefined }) {
  const [hours, setHours] = useState(24);
  const [runId, setRunId] = useState(props.runId ?? "");
  const [audit, setAudit] = useState<ConsoleAudit | undefined>(undefined);
  const [report, setReport] = useState<AuditReport | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  const [verifyProblem, setVerifyProblem] = useState<unknown>(undefined);
  useEffect(() => {
    const query = new URLSearchParams(
      props.runId !== undefined
        ? { run: props.runId }
        : { since: new Date(Date.now() - hours * HOUR).toISOString() },
    );
    setAudit(undefined);
    setProblem(undefined);
    get<ConsoleAudit>(`/audit?${query}`).then(setAudit, setProblem);
  }, [props.runId, hours]);
  const verify = () => {
    setVerifyProblem(undefined);
    get<AuditReport>("/audit/verify").then(setReport, setVerifyProblem);
  };
  return html`
    <h1>Audit${props.runId === undefined ? "" : html` <small>of run ${props.runId}</small>`}</h1>
    <form class="filters" aria-label="Which trail" onSubmit=${(event: Event) => {
      event.preventDefault();
      navigate(runId === "" ? "/console/audit" : `/console/audit?run=${encodeURIComponent(runId)}`);
    }}>
      <label>Run id <input name="run" value=${runId} onInput=${(event: Event) => setRunId((event.target as HTMLInputElement).value)} /></label>
      <label>Period
        <select name="hours" value=${String(hours)} disabled=${props.runId !== undefined}
          onChange=${(event: Event) => setHours(Number((event.target as HTMLSelectElement).value))}>
          <option value="1">last hour</option><option value="24">last day</option><option value="168">last week</option>
        </select>
      </label>
      <button type="submit">Show</button>
    </form>
    <section aria-labelledby="verify-heading">
      <h2 id="verify-heading">Chain verification</h2>
      <button type="button" onClick=${verify}>Verify the audit chains</button>
      <${ErrorNote} error=${verifyProblem} />
      ${
        report === undefined
          ? null
          : html`<p role="status" data-testid="audit-verdict" class=${report.intact ? "ok" : "error"}>
                ${report.intact ? "Audit intact" : "Audit NOT intact"}: ${report.records} records from ${report.writers.length} writers
              </p>
              <table data-testid="audit-writers">
                <thead><tr><th scope="col">Service</th><th scope="col">Writer</th><th scope="col">Records</th><th scope="col">Chain</th></tr></thead>
                <tbody>
                  ${report.writers.map(
                    (writer) => html`<tr>
                      <td>${writer.service}</td><td><code>${writer.writer}</code></td><td>${writer.records}</td>
                      <td class=${writer.status === "intact" ? "ok" : "error"}>${writer.status}${writer.broken === undefined ? "" : ` at record ${writer.broken.seq}: ${writer.broken.problem}`}</td>
                    </tr>`,
                  )}
                </tbody>
              </table>
              ${report.stream.map((line) => html`<p class="error">stream: ${line}</p>`)}
              ${
                report.pinsReplaceable.length === 0
                  ? null
                  : html`<p class="error" data-testid="audit-pins">Pinned keys are replaceable (${report.pinsReplaceable.join("; ")}): a service's NATS user can replace its own service's pins and make a genuine chain look broken. An operator makes it write-once with <code>loom streams lock-pins</code> (docs/security.md, "Audit").</p>`
              }`
      }
    </section>
    <section aria-labelledby="trail-heading">
      <h2 id="trail-heading">Trail</h2>
      <${ErrorNote} error=${problem} />
      ${
        audit === undefined
          ? null
          : html`<p class="count">${audit.total} records${audit.total > audit.records.length ? `, the newest ${audit.records.length} shown` : ""}</p>
            <table data-testid="audit-trail">
              <thead><tr><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">Principal</th><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Outcome</th><th scope="col">Rule</th><th scope="col">Run / step</th></tr></thead>
              <tbody>
                ${[...audit.records].reverse().map(
                  (record) => html`<tr>
                    <td>${time(record.time)}</td><td>${record.kind}</td><td>${record.principal}</td><td>${record.action ?? ""}</td>
                    <td><code>${record.resource}</code></td><td>${record.effect ?? record.outcome ?? ""}</td><td>${record.rule ?? ""}</td>
                    <td>${record.runId === undefined ? "" : `${record.runId.slice(0, 8)}${record.stepId === undefined ? "" : `/${record.stepId}`}`}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>
  `;
}
