import { useEffect, useState } from "preact/hooks";
import type { ConsoleTools } from "../../../../schemas/console.ts";
import { get } from "./api.ts";
import { ErrorNote } from "./format.ts";
import { html } from "./html.ts";

const percent = (share: number) => `${(share * 100).toFixed(1)} %`;

/** MCP servers (health, replicas, versions), their tools, and a day of call statistics and feedback. */
export function ToolsPage() {
  const [tools, setTools] = useState<ConsoleTools | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  const load = () => get<ConsoleTools>("/tools").then(setTools, setProblem);
  useEffect(() => {
    void load();
  }, []);
  if (tools === undefined)
    return html`<h1>Tools & servers</h1><${ErrorNote} error=${problem} /><p class="loading">Loading…</p>`;
  return html`
    <h1>Tools & servers</h1>
    <button type="button" class="link" onClick=${load}>Refresh</button>
    <${ErrorNote} error=${problem} />
    <h2>Servers</h2>
    <table data-testid="servers">
      <thead><tr><th scope="col">Server</th><th scope="col">Health</th><th scope="col">Replicas up</th><th scope="col">Versions</th><th scope="col">Restarts</th><th scope="col">Classification</th><th scope="col">Owner</th><th scope="col">Transport</th><th scope="col">Last error</th></tr></thead>
      <tbody>
        ${tools.servers.map(
          (server) => html`<tr>
            <th scope="row">${server.server}</th>
            <td><span class=${`health health-${server.state}`}>${server.state}</span></td>
            <td>${server.replicas.up}/${server.replicas.total}</td>
            <td>${server.versions.map((version) => `${version.name} (${version.weight})`).join(", ")}</td>
            <td>${server.restarts}</td>
            <td>${server.governance.data_classification}</td>
            <td>${server.governance.owner}</td>
            <td>${server.transport}</td>
            <td class="error-text">${server.lastError ?? ""}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <h2>Tools</h2>
    <table data-testid="tools">
      <thead><tr><th scope="col">Tool</th><th scope="col">Classification</th><th scope="col">Access</th><th scope="col">Description</th></tr></thead>
      <tbody>
        ${tools.tools.map(
          (tool) =>
            html`<tr><th scope="row"><code>${tool.server}.${tool.name}</code></th><td>${tool.governance.data_classification}</td><td>${tool.governance.access_level}</td><td>${tool.description ?? ""}</td></tr>`,
        )}
      </tbody>
    </table>
    <h2>Calls in the last day</h2>
    ${
      tools.stats.rows.length === 0
        ? html`<p class="hint">No tool calls yet.</p>`
        : html`<table data-testid="stats">
            <thead><tr><th scope="col">Tool</th><th scope="col">Calls</th><th scope="col">Error rate</th><th scope="col">p50</th><th scope="col">p95</th><th scope="col">Cached</th><th scope="col">Feedback (ok / bad)</th></tr></thead>
            <tbody>
              ${tools.stats.rows.map(
                (row) => html`<tr>
                  <th scope="row"><code>${row.server}.${row.target}</code></th>
                  <td>${row.calls}</td><td>${percent(row.errorRate)}</td>
                  <td>${row.latencyMs === undefined ? "" : `${row.latencyMs.p50} ms`}</td>
                  <td>${row.latencyMs === undefined ? "" : `${row.latencyMs.p95} ms`}</td>
                  <td>${percent(row.cachedShare)}</td>
                  <td>${row.feedback.ok} / ${row.feedback.bad}</td>
                </tr>`,
              )}
            </tbody>
          </table>`
    }
  `;
}
