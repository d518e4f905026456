import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Message, SendMessageRequest } from "@a2a-js/sdk";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { callAs, type PolicyStack, startLoomWithPolicy } from "../helpers/policy-stack.ts";
import { freePort } from "../helpers/ports.ts";
import { tokenFor } from "../helpers/tokens.ts";

/** Reads its own runs masked (the shipped policy: viewers-read-masked). */
const viewer = tokenFor("vera", "viewer");
/** Reads its own runs unmasked. */
const analyst = tokenFor("ann", "analyst");
/** Reads and follows any run, masked, and may register webhooks on any run (the policy below). */
const auditor = tokenFor("ivy", "auditor");
/** May register webhooks on any run but read none (the policy below). */
const notifier = tokenFor("nick", "notifier");
/** May start runs but not read them, its own included (the policy below). */
const blind = tokenFor("bea", "blind");
/** Reads any run unmasked and answers its approvals. */
const admin = tokenFor("root", "admin");

const EXTRA_POLICY = `
version: "webhook-readers"
rules:
  - name: auditors-read-masked
    effect: allow
    roles: [auditor]
    actions: [runs.read, runs.subscribe, push.configure]
    workflows: ["*"]
    obligations:
      mask:
        fields: [email, phone, ssn]
        pii: [email, phone, ssn, card, iban]
  - name: notifiers-configure-only
    effect: allow
    roles: [notifier]
    actions: [push.configure]
    workflows: ["*"]
  - name: blind-start-only
    effect: allow
    roles: [blind]
    actions: [workflow.start]
    workflows: ["*"]
  - name: blind-read-nothing
    effect: deny
    roles: [blind]
    actions: [runs.read]
    workflows: ["*"]
`;

/** Grace Hopper in the demo CRM (c-2), and the same contact as a run's input. */
const CONTACT = { email: "grace@example.com", ssn: "900-65-4321", phone: "+1 202 555 0147" };

/** Whether a text shows any of her contact data, in the forms a leak could take. */
function reveals(text: string): boolean {
  const lower = text.toLowerCase();
  const digits = text.replace(/\D/g, "");
  return (
    lower.includes(CONTACT.email) ||
    lower.includes(CONTACT.ssn) ||
    lower.includes(CONTACT.phone) ||
    digits.includes("900654321") ||
    digits.includes("2025550147")
  );
}

/**
 * A run whose input, steps, approval prompt and output carry personal data: the prompt re-encodes
 * the input and the contact (base64), so only a rendering from masked data hides them. It waits at
 * `first` (a prompt without data) so a webhook registered later hears the rest.
 */
const WORKFLOW = {
  id: "webhook-masking",
  version: 1,
  steps: [
    { id: "contact", call: "crm.get_contact", with: { id: "c-2" } },
    { id: "first", approval: { prompt: "Go on?", roles: ["admin"] } },
    {
      id: "confirm",
      approval: {
        prompt:
          "b64={% $base64encode($input.ssn & '|' & $input.email & '|' & $steps.contact.phone & '|' & $steps.contact.email) %} mail={% $input.email %}",
        roles: ["admin"],
      },
    },
  ],
  output: "{% { 'input': $input, 'contact': $steps.contact } %}",
};

/** Every base64 run in a text, decoded: what a re-encoded prompt hides. */
function decoded(text: string): string {
  return [...text.matchAll(/b64=([A-Za-z0-9+/=]+)/g)]
    .map(([, encoded]) => Buffer.from(encoded ?? "", "base64").toString())
    .join("\n");
}

const authOf = (token: string) => ({ serviceParameters: { Authorization: `Bearer ${token}` } });

/**
 * Attacks on A2A push notifications: whoever registers a webhook (with the message that starts its
 * run, or by push.configure later) is sent each event masked as its `runs.read` decision requires,
 * as SubscribeToTask shows it; one who may not read the run is refused and sent nothing.
 */
describe("security - masking: a webhook is sent what its registrant may read", () => {
  let stack: PolicyStack;
  let hookBase: string;
  let a2a: Client;
  let hooks: Server;
  /** Bodies posted, by the webhook's path. */
  const bodies = new Map<string, string[]>();

  async function answer(runId: string, stepId: string): Promise<void> {
    for (let tries = 0; tries < 150; tries++) {
      const view = await callAs(stack.base, "GET", `/console/api/runs/${runId}`, admin);
      if (view.body.includes(`"stepId":"${stepId}"`) && view.body.includes("TASK_STATE_INPUT_REQUIRED")) {
        const answered = await callAs(stack.base, "POST", `/console/api/runs/${runId}/input`, admin, {
          approved: true,
        });
        if (answered.status === 200) return;
      }
      await sleep(200);
    }
    throw new Error(`run ${runId} never waited at ${stepId}`);
  }

  /** Starts the workflow as `token`, with a webhook at `path` when one is given; the run's id. */
  async function start(token: string, path?: string): Promise<string> {
    const request = SendMessageRequest.fromJSON({
      message: Message.toJSON(
        Message.fromJSON({
          messageId: randomUUID(),
          role: "ROLE_USER",
          parts: [{ data: CONTACT }],
          metadata: { skill: WORKFLOW.id },
        }),
      ),
      ...(path === undefined
        ? {}
        : { configuration: { taskPushNotificationConfig: { url: `${hookBase}${path}` } } }),
    });
    const task = await a2a.sendMessage(request, authOf(token));
    if (!("id" in task)) throw new Error("the message started no task");
    return task.id;
  }

  /** Registers a webhook at `path` on run `runId` as `token`; whether it was accepted. */
  const register = (runId: string, path: string, token: string) =>
    a2a
      .createTaskPushNotificationConfig(
        {
          tenant: "",
          id: "",
          taskId: runId,
          url: `${hookBase}${path}`,
          token: "",
          authentication: undefined,
        },
        authOf(token),
      )
      .then(
        () => true,
        () => false,
      );

  /** Drives run `runId` through both approvals, then waits until `path` heard it complete. */
  async function complete(runId: string, path: string): Promise<string> {
    await answer(runId, "first");
    await answer(runId, "confirm");
    for (let tries = 0; tries < 150; tries++) {
      const heard = (bodies.get(path) ?? []).join("\n");
      if (heard.includes("TASK_STATE_COMPLETED")) return heard;
      await sleep(200);
    }
    return (bodies.get(path) ?? []).join("\n");
  }

  beforeAll(async () => {
    const hookPort = await freePort();
    hookBase = `http://127.0.0.1:${hookPort}/hooks/`;
    hooks = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      req.on("end", () => {
        const path = (req.url ?? "").slice("/hooks/".length);
        bodies.set(path, [...(bodies.get(path) ?? []), body]);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => hooks.listen(hookPort, "127.0.0.1", resolve));
    stack = await startLoomWithPolicy("webhook-readers", EXTRA_POLICY, { LOOM_A2A_WEBHOOK_ALLOW: hookBase });
    await writeFile(join(stack.dir, "workflow.yaml"), JSON.stringify(WORKFLOW));
    const applied = await stack.loom.cli(["workflow", "apply", join(stack.dir, "workflow.yaml")], {
      token: admin,
    });
    expect(applied.code, applied.stderr).toBe(0);
    a2a = await new ClientFactory().createFromUrl(stack.base);
  }, 120_000);
  afterAll(async () => {
    await stack?.[Symbol.asyncDispose]();
    hooks?.close();
  });

  it("masking - webhooks: a masked reader's webhook is sent no raw email, SSN or phone", async () => {
    const viewerRun = await start(viewer, "viewer-at-start");
    const viewerLater = await start(viewer);
    const analystRun = await start(analyst);
    const adminRun = await start(admin, "admin-at-start");
    const registrations: Array<[string, string, string, string]> = [
      ["a viewer, by push.configure on its own run", viewerLater, "viewer-later", viewer],
      ["an auditor who reads masked, by push.configure on an analyst's run", analystRun, "auditor", auditor],
    ];
    for (const [who, runId, path, token] of registrations) {
      await control(`${who}: the webhook is registered`, () => register(runId, path, token));
    }
    const heard = new Map<string, string>();
    for (const [runId, path] of [
      [viewerRun, "viewer-at-start"],
      [viewerLater, "viewer-later"],
      [analystRun, "auditor"],
      [adminRun, "admin-at-start"],
    ] as const) {
      heard.set(path, await complete(runId, path));
    }
    for (const [who, path] of [
      ["a viewer, with the message that starts its run", "viewer-at-start"],
      ["a viewer, by push.configure on its own run", "viewer-later"],
      ["an auditor who reads masked, by push.configure on an analyst's run", "auditor"],
    ] as const) {
      const body = heard.get(path) ?? "";
      await attack(AttackClass.MASKING, `webhook of ${who}: status messages and artifacts`, async () => {
        return !reveals(body);
      });
      await attack(AttackClass.MASKING, `webhook of ${who}: the approval prompt re-encoded`, async () => {
        return body.includes("b64=") && !reveals(decoded(body));
      });
      await control(`webhook of ${who}: sent the prompt from masked data and the run's end`, async () => {
        return (
          decoded(body).includes("[masked]|[masked]") &&
          body.includes("TASK_STATE_COMPLETED") &&
          body.includes("artifactUpdate")
        );
      });
    }
    await control("an admin's webhook is sent the events as they are", async () => {
      const body = heard.get("admin-at-start") ?? "";
      return reveals(body) && decoded(body).includes(`${CONTACT.ssn}|${CONTACT.email}`);
    });
  });

  it("masking - webhooks: a registrant who may not read the run is refused and sent nothing", async () => {
    const runId = await start(analyst);
    await attack(AttackClass.WEBHOOKS, "a notifier who may configure webhooks but not read", async () => {
      return !(await register(runId, "notifier", notifier));
    });
    await attack(AttackClass.WEBHOOKS, "a manager who may neither configure nor read", async () => {
      return !(await register(runId, "manager", tokenFor("max", "manager")));
    });
    await control("the analyst registers a webhook on its own run", () =>
      register(runId, "analyst", analyst),
    );
    const body = await complete(runId, "analyst");
    await control("the analyst's webhook is sent its run unmasked", async () => reveals(body));
    await attack(
      AttackClass.WEBHOOKS,
      "a starter who may not read its run, with its first message",
      async () => {
        return start(blind, "blind").then(
          () => false,
          (error: Error) => /webhook is refused/.test(error.message),
        );
      },
    );
    await attack(AttackClass.WEBHOOKS, "nothing reached the refused registrants' URLs", async () => {
      return !bodies.has("notifier") && !bodies.has("manager") && !bodies.has("blind");
    });
  });
});
