import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Loom, REPO_ROOT, startLoom } from "./loom.ts";
import { freePort } from "./ports.ts";

/** Loom with the shipped policy and one policy file more, its HTTP edge (A2A, console) at `base`. */
export interface PolicyStack extends AsyncDisposable {
  loom: Loom;
  /** `http://127.0.0.1:<port>` of the orchestrator's HTTP edge. */
  base: string;
  /** A folder of the test's own, removed with the stack (the policies are under `policies/`). */
  dir: string;
}

/** Starts Loom with `infra/policies/default.yaml` and `extra` (as `<name>.yaml`) beside it. */
export async function startLoomWithPolicy(
  name: string,
  extra: string,
  env: Record<string, string> = {},
): Promise<PolicyStack> {
  const dir = await mkdtemp(join(tmpdir(), `loom-${name}-`));
  await mkdir(join(dir, "policies"));
  await copyFile(join(REPO_ROOT, "infra/policies/default.yaml"), join(dir, "policies/default.yaml"));
  await writeFile(join(dir, `policies/${name}.yaml`), extra);
  const port = await freePort();
  const loom = await startLoom({
    env: { LOOM_A2A_PORT: String(port), LOOM_POLICY_DIR: join(dir, "policies"), ...env },
    readyTimeoutMs: 60_000,
  });
  return {
    loom,
    base: `http://127.0.0.1:${port}`,
    dir,
    async [Symbol.asyncDispose]() {
      await loom[Symbol.asyncDispose]();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A request to the HTTP edge as `token` (none when undefined). A stream (the console's run events)
 * is read up to its first event, which holds the run's events so far, and then hung up.
 */
export async function callAs(
  base: string,
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  const controller = new AbortController();
  const response = await fetch(`${base}${path}`, {
    method,
    signal: controller.signal,
    headers: {
      ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    while (!text.includes("\n\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    controller.abort();
    return { status: response.status, body: text };
  }
  return { status: response.status, body: await response.text() };
}

/**
 * A workflow that reads Grace Hopper's contact (c-2 in the demo CRM, with her email, SSN and phone)
 * and then asks `roles` to approve `prompt`, which may quote or re-encode `$steps.contact`.
 */
export function contactApprovalWorkflow(id: string, prompt: string, roles: string[]) {
  return {
    id,
    version: 1,
    steps: [
      { id: "contact", call: "crm.get_contact", with: { id: "c-2" } },
      { id: "confirm", approval: { prompt, roles } },
    ],
  };
}
