import { useEffect, useState } from "preact/hooks";
import type { ConsoleConfig, DevSignInReply } from "../../../../schemas/console.ts";
import { get, post } from "./api.ts";
import { html } from "./html.ts";

const DEV_ROLES = ["analyst", "manager", "viewer", "admin", "contractor"];

/** Sign in with a bearer token, or in dev mode as anyone with the roles chosen. */
export function SignIn(props: { onToken: (token: string) => Promise<void>; refusal: string | undefined }) {
  const [config, setConfig] = useState<ConsoleConfig | undefined>(undefined);
  const [token, setToken] = useState("");
  const [subject, setSubject] = useState("ann");
  const [role, setRole] = useState("analyst");
  const [problem, setProblem] = useState<string | undefined>(undefined);
  useEffect(() => {
    get<ConsoleConfig>("/config").then(setConfig, (error: Error) => setProblem(error.message));
  }, []);
  const pasted = (event: Event) => {
    event.preventDefault();
    void props.onToken(token.trim());
  };
  const devSignIn = async (event: Event) => {
    event.preventDefault();
    try {
      const reply = await post<DevSignInReply>("/dev-sign-in", { subject, roles: [role] }, undefined);
      await props.onToken(reply.token);
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };
  const refusal = props.refusal ?? problem;
  return html`
    <main id="main" class="sign-in">
      <h1>Loom console</h1>
      ${refusal === undefined ? null : html`<p role="alert" class="error">${refusal}</p>`}
      <form onSubmit=${pasted} aria-labelledby="token-heading">
        <h2 id="token-heading">Sign in with a token</h2>
        <label for="token">Bearer token (an access token of your identity provider)</label>
        <textarea id="token" name="token" rows="4" required value=${token}
          onInput=${(event: Event) => setToken((event.target as HTMLTextAreaElement).value)}></textarea>
        <button type="submit">Sign in</button>
      </form>
      ${
        config?.devSignIn === true
          ? html`<form onSubmit=${devSignIn} aria-labelledby="dev-heading">
              <h2 id="dev-heading">Dev sign-in</h2>
              <p class="hint">This stack runs with the dev signing key: sign in as anyone, with the role you pick.</p>
              <label for="subject">Subject</label>
              <input id="subject" name="subject" required value=${subject}
                onInput=${(event: Event) => setSubject((event.target as HTMLInputElement).value)} />
              <label for="role">Role</label>
              <select id="role" name="role" value=${role}
                onChange=${(event: Event) => setRole((event.target as HTMLSelectElement).value)}>
                ${DEV_ROLES.map((name) => html`<option value=${name}>${name}</option>`)}
              </select>
              <button type="submit">Sign in as ${subject}</button>
            </form>`
          : null
      }
    </main>
  `;
}
