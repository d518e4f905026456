import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { ConsoleMe } from "../../../../schemas/console.ts";
import { get, onTokenRefused, storedToken, storeToken } from "./api.ts";
import { AuditPage } from "./audit-page.ts";
import { html } from "./html.ts";
import { InboxPage } from "./inbox-page.ts";
import { PolicyPage } from "./policy-page.ts";
import { linkTo, useView, type View } from "./router.ts";
import { RunPage } from "./run-page.ts";
import { RunsPage } from "./runs-page.ts";
import { SignIn } from "./sign-in.ts";
import { ToolsPage } from "./tools-page.ts";

const NAV: Array<{ page: View["page"]; href: string; label: string }> = [
  { page: "runs", href: "/console", label: "Runs" },
  { page: "inbox", href: "/console/inbox", label: "Approvals" },
  { page: "tools", href: "/console/tools", label: "Tools & servers" },
  { page: "audit", href: "/console/audit", label: "Audit" },
  { page: "policy", href: "/console/policy", label: "Policy" },
];

function App() {
  const view = useView();
  const [me, setMe] = useState<ConsoleMe | undefined>(undefined);
  const [refusal, setRefusal] = useState<string | undefined>(undefined);
  const [checking, setChecking] = useState(storedToken() !== undefined);

  const signOut = (reason?: string) => {
    storeToken(undefined);
    setMe(undefined);
    setRefusal(reason);
  };
  const signIn = async (token: string) => {
    storeToken(token);
    try {
      setMe(await get<ConsoleMe>("/me"));
      setRefusal(undefined);
    } catch (error) {
      signOut(error instanceof Error ? error.message : String(error));
    }
  };
  useEffect(() => onTokenRefused((error) => signOut(`Signed out: ${error.message}`)), []);
  useEffect(() => {
    const token = storedToken();
    if (token !== undefined) void signIn(token).finally(() => setChecking(false));
  }, []);

  if (checking) return html`<p class="loading">Checking your sign-in…</p>`;
  if (me === undefined) return html`<${SignIn} onToken=${signIn} refusal=${refusal} />`;
  const current = view.page === "run" ? "runs" : view.page;
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" ...${linkTo("/console")}>Loom</a>
      <nav aria-label="Console">
        <ul>
          ${NAV.map(
            (item) => html`<li>
              <a ...${linkTo(item.href)} aria-current=${item.page === current ? "page" : undefined}>${item.label}</a>
            </li>`,
          )}
        </ul>
      </nav>
      <div class="who">
        <span data-testid="principal">${me.id}</span>
        <span class="roles">${me.roles.join(", ")}</span>
        <button type="button" class="link" onClick=${() => signOut()}>Sign out</button>
      </div>
    </header>
    <main id="main" tabindex="-1">${page(view, me)}</main>
  `;
}

function page(view: View, me: ConsoleMe) {
  switch (view.page) {
    case "run":
      return html`<${RunPage} key=${view.runId} runId=${view.runId} />`;
    case "inbox":
      return html`<${InboxPage} me=${me} />`;
    case "tools":
      return html`<${ToolsPage} />`;
    case "audit":
      return html`<${AuditPage} runId=${view.runId} />`;
    case "policy":
      return html`<${PolicyPage} me=${me} />`;
    default:
      return html`<${RunsPage} />`;
  }
}

const root = document.getElementById("app");
if (root !== null) {
  root.replaceChildren();
  render(html`<${App} />`, root);
}
