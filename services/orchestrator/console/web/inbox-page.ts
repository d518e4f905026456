import { useEffect, useState } from "preact/hooks";
import type { ConsoleMe, Inbox, InboxItem } from "../../../../schemas/console.ts";
import type { RunInput } from "../../../../schemas/run.ts";
import { follow, post } from "./api.ts";
import { ErrorNote, StateBadge, time } from "./format.ts";
import { html } from "./html.ts";
import { linkTo } from "./router.ts";
import { SchemaForm } from "./schema-form.ts";

/** What runs wait for that the caller may answer, live: approvals for its roles, servers' questions. */
export function InboxPage(props: { me: ConsoleMe }) {
  const [inbox, setInbox] = useState<Inbox | undefined>(undefined);
  const [problem, setProblem] = useState<unknown>(undefined);
  useEffect(() => follow("/inbox/live", (_event, data) => setInbox(data as Inbox), setProblem), []);
  return html`
    <h1>Approvals</h1>
    <p class="hint">Runs waiting for someone with your roles (${props.me.roles.join(", ")}).</p>
    <${ErrorNote} error=${problem} />
    ${
      inbox === undefined
        ? html`<p class="loading" aria-live="polite">Loading your inbox…</p>`
        : inbox.items.length === 0
          ? html`<p aria-live="polite">Nothing waits for you.</p>`
          : html`<ul class="inbox" aria-live="polite">
              ${inbox.items.map((item) => html`<li key=${`${item.runId}/${item.asked.stepId}`}><${InboxEntry} item=${item} /></li>`)}
            </ul>`
    }
  `;
}

function InboxEntry(props: { item: InboxItem }) {
  const { item } = props;
  const { asked } = item;
  const [comment, setComment] = useState("");
  const [problem, setProblem] = useState<unknown>(undefined);
  const [sent, setSent] = useState<string | undefined>(undefined);
  const answer = async (body: RunInput, what: string) => {
    setProblem(undefined);
    try {
      await post(`/runs/${encodeURIComponent(item.runId)}/input`, { stepId: asked.stepId, ...body });
      setSent(what);
    } catch (error) {
      setProblem(error);
    }
  };
  const commentId = `comment-${item.runId}-${asked.stepId}`;
  return html`<article class="inbox-item" data-run=${item.runId} aria-labelledby=${`title-${item.runId}-${asked.stepId}`}>
    <h2 id=${`title-${item.runId}-${asked.stepId}`}>${item.workflowId} · <code>${asked.stepId}</code></h2>
    <p class="prompt">${asked.prompt}</p>
    <p class="meta">
      <${StateBadge} state=${item.state} /> run <a ...${linkTo(`/console/runs/${item.runId}`)}>${item.runId.slice(0, 8)}</a>
      ${item.startedBy === undefined ? "" : ` started by ${item.startedBy}`} · waiting since ${time(item.updatedAt)}
      ${asked.roles.length === 0 ? "" : ` · for ${asked.roles.join(", ")}`}
      ${asked.server === undefined ? "" : ` · asked by ${asked.server}`}
    </p>
    ${
      sent !== undefined
        ? html`<p role="status">${sent}.</p>`
        : asked.requestedSchema !== undefined
          ? html`<${SchemaForm} id=${`${item.runId}-${asked.stepId}`} schema=${asked.requestedSchema}
              error=${problem} onSubmit=${(data: Record<string, unknown>) => answer({ data }, "Answer sent")}
              onDecline=${() => answer({ approved: false }, "Declined")} />`
          : html`<form onSubmit=${(event: Event) => event.preventDefault()}>
              <label for=${commentId}>Comment (optional)</label>
              <textarea id=${commentId} rows="2" maxlength="2000" value=${comment}
                onInput=${(event: Event) => setComment((event.target as HTMLTextAreaElement).value)}></textarea>
              <div class="actions">
                <button type="button" onClick=${() => answer({ approved: true, ...(comment === "" ? {} : { comment }) }, "Approved")}>Approve</button>
                <button type="button" class="secondary" onClick=${() => answer({ approved: false, ...(comment === "" ? {} : { comment }) }, "Rejected")}>Reject</button>
              </div>
              <${ErrorNote} error=${problem} />
            </form>`
    }
  </article>`;
}
