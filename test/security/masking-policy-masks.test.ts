import { randomUUID } from "node:crypto";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, it } from "vitest";
import { PolicyMasksContract } from "../../schemas/contracts.ts";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { request, tracedHeaders } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser } from "../helpers/loom.ts";
import {
  callAs,
  contactApprovalWorkflow,
  type PolicyStack,
  startLoomWithPolicy,
} from "../helpers/policy-stack.ts";
import { tokenFor } from "../helpers/tokens.ts";

/** Started by an analyst, who may read its own runs unmasked. */
const owner = tokenFor("ann", "analyst");
/** Reads any run with names and internal ids masked, beyond the built-in kinds (the policy below). */
const auditor = tokenFor("ivy", "auditor");

const AUDITOR_POLICY = `
version: "auditors-mask-names"
rules:
  - name: auditors-read-without-names
    effect: allow
    roles: [auditor]
    actions: [runs.read, runs.subscribe]
    workflows: ["*"]
    obligations:
      mask:
        fields: [name]
        patterns: ["Hopper"]
`;

/**
 * A prompt that re-encodes the contact's name (a field the policy masks by name) and its surname
 * (a pattern the policy adds) so that masking the rendered text would miss both.
 */
const workflow = contactApprovalWorkflow(
  "prompt-reencodes-name",
  "rev={% $join($reverse($split($steps.contact.name, '')), '') %} up={% $uppercase($steps.contact.name) %} b64={% $base64encode($steps.contact.name) %}",
  ["admin"],
);

/**
 * Whether a text shows Grace Hopper's name as the prompt re-encodes it: reversed, uppercased or in
 * base64 (her email, which this policy does not mask, holds "grace" in lower case).
 */
function reveals(text: string): boolean {
  const encoded = [...text.matchAll(/b64=([A-Za-z0-9+/=]+)/g)]
    .map(([, piece]) =>
      Buffer.from(piece ?? "", "base64")
        .toString()
        .toLowerCase(),
    )
    .join(" ");
  return (
    ["Grace Hopper", "Hopper", "reppoH", "ecarG", "GRACE", "HOPPER"].some((shown) => text.includes(shown)) ||
    encoded.includes("grace") ||
    encoded.includes("hopper")
  );
}

const authOf = (token: string) => ({ serviceParameters: { Authorization: `Bearer ${token}` } });

/**
 * Attacks on an approval prompt's masked rendering with masks a policy adds beyond the built-in
 * kinds of personal data: a field (`mask.fields: [name]`) and a pattern. The rendering shown to a
 * masked reader is made from data masked with every mask the active policy can require, which
 * acp-policy answers on `loom.v1.policy.masks` to the orchestrator alone.
 */
describe("security - masking: an approval prompt's masked rendering applies the masks a policy adds", () => {
  let stack: PolicyStack;
  let loom: Loom;
  let a2a: Client;
  let runId: string;

  const consoleView = async (token: string) =>
    (await callAs(stack.base, "GET", `/console/api/runs/${runId}`, token)).body;

  beforeAll(async () => {
    stack = await startLoomWithPolicy("auditors", AUDITOR_POLICY);
    loom = stack.loom;
    a2a = await new ClientFactory().createFromUrl(stack.base);
    runId = randomUUID();
    await jetstream(await loom.connectAs(NatsUser.SUBMITTER)).publish(
      Subjects.RUNS_SUBMIT,
      JSON.stringify({ runId, workflow, input: {} }),
      { msgID: runId, headers: tracedHeaders({ [Headers.AUTHORIZATION]: `Bearer ${owner}` }) },
    );
    for (let tries = 0; tries < 150 && !(await consoleView(owner)).includes("rev="); tries++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }, 120_000);
  afterAll(() => stack?.[Symbol.asyncDispose]());

  it("masking - policy masks: a prompt that re-encodes a field or pattern the policy masks reveals nothing", async () => {
    const paths: Array<[string, () => Promise<string>]> = [
      ["the console's run view", () => consoleView(auditor)],
      [
        "the console's run events",
        async () => (await callAs(stack.base, "GET", `/console/api/runs/${runId}/events`, auditor)).body,
      ],
      [
        "loom runs get",
        async () => {
          const got = await loom.cli(["runs", "get", runId, "--json"], { token: auditor });
          return `${got.stdout}${got.stderr}`;
        },
      ],
      [
        "A2A SubscribeToTask",
        async () => {
          const seen: string[] = [];
          for await (const event of a2a.resubscribeTask({ tenant: "", id: runId }, authOf(auditor))) {
            seen.push(JSON.stringify(event));
            if (seen.length >= 20) break;
          }
          return seen.join("\n");
        },
      ],
    ];
    for (const [path, shown] of paths) {
      const dump = await shown();
      await attack(
        AttackClass.MASKING,
        `a re-encoded name through ${path} to a reader it is masked for`,
        async () => {
          return !reveals(dump);
        },
      );
      await control(`${path} shows that reader the prompt, rendered from masked data`, async () => {
        return dump.includes("rev=]deksam[") && dump.includes("up=[MASKED]");
      });
    }
    await control("the owner, who reads the run unmasked, is shown the prompt as asked", async () => {
      const view = await consoleView(owner);
      return view.includes("rev=reppoH ecarG") && view.includes("up=GRACE HOPPER");
    });
  });

  it("masking - policy masks: only the orchestrator's NATS user may ask for them", async () => {
    const ask = async (user: NatsUser) =>
      request(
        await loom.connectAs(user),
        Subjects.POLICY_MASKS,
        PolicyMasksContract,
        {},
        { timeoutMs: 2_000 },
      ).then(
        (reply) => reply.obligations,
        () => undefined,
      );
    for (const user of [NatsUser.SUBMITTER, NatsUser.MCP_WORKER, NatsUser.LLM_AGENT, NatsUser.POLICY_ADMIN]) {
      await attack(
        AttackClass.TRUSTED_BUS,
        `${user} asks for every mask the policy can require`,
        async () => {
          return (await ask(user)) === undefined;
        },
      );
    }
    await control("the orchestrator's user is answered every mask, the policy's own among them", async () => {
      const masks = await ask(NatsUser.ORCHESTRATOR);
      return masks?.maskFields.includes("name") === true && masks.maskPatterns.includes("Hopper");
    });
  });
});
