import { randomUUID } from "node:crypto";
import { type Client, ClientFactory } from "@a2a-js/sdk/client";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { tracedHeaders } from "../../services/kit/index.ts";
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
/** A manager answers approvals and may not read the run at all. */
const manager = tokenFor("max", "manager");
/** A manager who is also an auditor: may read and follow any run, masked (the policy below). */
const auditor = tokenFor("ivy", "manager", "auditor");
/** An admin answers approvals and reads any run unmasked. */
const admin = tokenFor("root", "admin");

const AUDITOR_POLICY = `
version: "auditors"
rules:
  - name: auditors-read-masked
    effect: allow
    roles: [auditor]
    actions: [runs.read, runs.subscribe]
    workflows: ["*"]
    obligations:
      mask:
        fields: [email, phone, ssn]
        pii: [email, phone, ssn, card, iban]
`;

/** Grace Hopper in the demo CRM (c-2): her email, SSN and phone in every form a leak could take. */
function reveals(text: string): boolean {
  const lower = text.toLowerCase();
  const digits = text.replace(/\D/g, "");
  return (
    lower.includes("grace@example.com") ||
    lower.includes("900-65-4321") ||
    lower.includes("+1 202 555 0147") ||
    digits.includes("900654321") ||
    digits.includes("2025550147")
  );
}

/**
 * Each way a workflow whose starter may see raw data re-encodes it in an approval's prompt, so that
 * masking patterns over the rendered text no longer match; and how the test decodes it again.
 */
const REENCODINGS: Array<{ label: string; expression: string; decode: (shown: string) => string }> = [
  {
    label: "b64",
    expression:
      "{% $base64encode($steps.contact.ssn & '|' & $steps.contact.email & '|' & $steps.contact.phone) %}",
    decode: (shown) => Buffer.from(shown, "base64").toString(),
  },
  {
    label: "rev",
    expression:
      "{% $join($reverse($split($steps.contact.ssn & '|' & $steps.contact.email & '|' & $steps.contact.phone, '')), '') %}",
    decode: (shown) => [...shown].reverse().join(""),
  },
  {
    label: "spaced",
    expression:
      "{% $join($split($replace($steps.contact.ssn & '/' & $steps.contact.phone, /[^0-9]/, ''), ''), ' ') %}",
    decode: (shown) => shown.replace(/ /g, ""),
  },
  {
    label: "split",
    expression:
      "{% $substringBefore($steps.contact.email, '@') %}/{% $substringAfter($steps.contact.email, '@') %}",
    decode: (shown) => shown.replace("/", "@"),
  },
  {
    label: "upper",
    expression:
      "{% $uppercase($steps.contact.email & ' ' & $steps.contact.ssn & ' ' & $steps.contact.phone) %}",
    decode: (shown) => shown.toLowerCase(),
  },
  {
    label: "string",
    expression: "{% $string($steps.contact) %}",
    decode: (shown) => Object.values(JSON.parse(shown) as Record<string, string>).join(" "),
  },
  {
    label: "each",
    expression:
      "{% $join($keys($steps.contact), ',') %}={% $join($each($steps.contact, function($v, $k) { $k & ':' & $v }), ',') %}",
    decode: (shown) => shown,
  },
  {
    label: "lookup",
    expression:
      "{% $lookup($steps.contact, 's' & 's' & 'n') %}/{% $lookup($steps.contact, 'em' & 'ail') %}/{% $lookup($steps.contact, $keys($steps.contact)[$contains($, 'pho')]) %}",
    decode: (shown) => shown,
  },
  {
    label: "sub",
    expression:
      "{% $substring($steps.contact.ssn, 0, 3) %}.{% $substring($steps.contact.ssn, 4, 2) %}.{% $substring($steps.contact.ssn, 7) %}",
    decode: (shown) => shown.replace(/\./g, ""),
  },
];
const SEPARATOR = " ;; ";

/** The prompt's pieces by label, as rendered for whoever is shown it. */
function pieces(prompt: string): Map<string, string> {
  return new Map(
    prompt.split(SEPARATOR).map((piece) => {
      const at = piece.indexOf("=");
      return [piece.slice(0, at), piece.slice(at + 1)];
    }),
  );
}

const workflow = contactApprovalWorkflow(
  "prompt-reencodes-contact",
  REENCODINGS.map(({ label, expression }) => `${label}=${expression}`).join(SEPARATOR),
  ["manager", "admin"],
);

/**
 * Attacks on the approval prompt: a workflow re-encodes the contact it read (base64, reversed,
 * digits re-spaced, split, uppercased, `$string`, `$keys`/`$each`, `$lookup` by a computed name,
 * `$substring` pieces) so that masking patterns over the rendered prompt would miss it. Every path
 * that shows the prompt to an approver who may not read the run unmasked (the console inbox, run
 * views, run events in the console, the CLI and A2A) must show it rendered from masked data.
 */
describe("security - masking: an approval's prompt is rendered from masked data for a reader who must see masked data", () => {
  let stack: PolicyStack;
  let loom: Loom;
  let a2a: Client;
  let runId: string;

  const call = (method: string, path: string, token: string, body?: unknown) =>
    callAs(stack.base, method, path, token, body);

  async function submit(): Promise<string> {
    const id = randomUUID();
    await jetstream(await loom.connectAs(NatsUser.SUBMITTER)).publish(
      Subjects.RUNS_SUBMIT,
      JSON.stringify({ runId: id, workflow, input: {} }),
      { msgID: id, headers: tracedHeaders({ [Headers.AUTHORIZATION]: `Bearer ${owner}` }) },
    );
    return id;
  }

  /** The prompt of run `id` in the caller's console inbox, once it is there. */
  async function inboxPrompt(id: string, token: string): Promise<string> {
    for (let tries = 0; tries < 150; tries++) {
      const inbox = JSON.parse((await call("GET", "/console/api/inbox", token)).body) as {
        items: Array<{ runId: string; asked: { prompt: string } }>;
      };
      const item = inbox.items.find((candidate) => candidate.runId === id);
      if (item !== undefined) return item.asked.prompt;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`run ${id} never reached the inbox`);
  }

  /** What a path shows the caller, as it comes (JSON, a stream's events, a CLI's output). */
  type Path = [string, (token: string) => Promise<string>];
  const paths = (): Path[] => [
    ["the console inbox", async (token) => (await call("GET", "/console/api/inbox", token)).body],
    [
      "the console's run view",
      async (token) => (await call("GET", `/console/api/runs/${runId}`, token)).body,
    ],
    [
      "the console's run events",
      async (token) => (await call("GET", `/console/api/runs/${runId}/events`, token)).body,
    ],
    [
      "loom runs get",
      async (token) => {
        const got = await loom.cli(["runs", "get", runId, "--json"], { token });
        return `${got.stdout}${got.stderr}`;
      },
    ],
    [
      "loom runs events",
      async (token) => {
        const got = await loom.cli(["runs", "events", runId, "--json"], { token });
        return `${got.stdout}${got.stderr}`;
      },
    ],
    [
      "A2A GetTask",
      (token) =>
        a2a.getTask({ tenant: "", id: runId }, authOf(token)).then(
          (task) => JSON.stringify(task),
          (error: Error) => `${error.name}: ${error.message}`,
        ),
    ],
    [
      "A2A SubscribeToTask",
      async (token) => {
        const seen: string[] = [];
        try {
          for await (const event of a2a.resubscribeTask({ tenant: "", id: runId }, authOf(token))) {
            seen.push(JSON.stringify(event));
            if (seen.length >= 20) break;
          }
        } catch (error) {
          seen.push(String(error));
        }
        return seen.join("\n");
      },
    ],
  ];

  beforeAll(async () => {
    stack = await startLoomWithPolicy("auditors", AUDITOR_POLICY);
    loom = stack.loom;
    a2a = await new ClientFactory().createFromUrl(stack.base);
    runId = await submit();
    await inboxPrompt(runId, admin);
  }, 120_000);
  afterAll(() => stack?.[Symbol.asyncDispose]());

  it("masking - approval prompt: no re-encoding of the contact reaches an approver who may not read it unmasked", async () => {
    const showing = new Set<string>();
    for (const [who, token] of [
      ["a manager who may not read the run", manager],
      ["a manager who reads the run masked", auditor],
    ] as const) {
      for (const [path, shown] of paths()) {
        const dump = await shown(token);
        const prompt = promptIn(dump);
        if (prompt !== undefined) showing.add(`${who}: ${path}`);
        const rendered = pieces(prompt ?? "");
        for (const { label, decode } of REENCODINGS) {
          await attack(AttackClass.MASKING, `${label} prompt through ${path} to ${who}`, async () => {
            const piece = rendered.get(label);
            const decoded = piece === undefined ? "" : safely(() => decode(piece));
            return !reveals(dump) && !reveals(decoded);
          });
        }
      }
      await control(`${who} is shown the question, rendered from masked data`, async () => {
        const rendered = pieces(await inboxPrompt(runId, token));
        const contact = JSON.parse(rendered.get("string") ?? "{}") as Record<string, string>;
        return (
          Buffer.from(rendered.get("b64") ?? "", "base64").toString() === "[masked]|[masked]|[masked]" &&
          rendered.get("lookup") === "[masked]/[masked]/[masked]" &&
          contact.name === "Grace Hopper" &&
          contact.ssn === "[masked]"
        );
      });
    }
    await control(
      "every path that shows the prompt to a reader showed it; to a non-reader only the inbox",
      async () => {
        const expected = [
          "a manager who may not read the run: the console inbox",
          ...paths()
            .map(([path]) => `a manager who reads the run masked: ${path}`)
            .filter((path) => !path.endsWith("A2A GetTask")),
        ];
        return JSON.stringify([...showing].sort()) === JSON.stringify(expected.sort());
      },
    );
    await control("an admin, who may read the run unmasked, is shown the prompt as asked", async () => {
      const rendered = pieces(await inboxPrompt(runId, admin));
      return (
        Buffer.from(rendered.get("b64") ?? "", "base64").toString() ===
          "900-65-4321|grace@example.com|+1 202 555 0147" && rendered.get("sub") === "900.65.4321"
      );
    });
    await control("the owner, who may read the run unmasked, is shown the prompt as asked", async () => {
      const got = await loom.cli(["runs", "get", runId, "--json"], { token: owner });
      return reveals(got.stdout) && got.stdout.includes("grace@example.com");
    });
  });

  it("masking - approval prompt: a manager who may not read the run still approves it, and the run completes", async () => {
    const answer = await call("POST", `/console/api/runs/${runId}/input`, manager, { approved: true });
    expect(answer.status).toBe(200);
    await control("the run completes after the manager's approval", async () => {
      for (let tries = 0; tries < 100; tries++) {
        const view = await call("GET", `/console/api/runs/${runId}`, owner);
        if (view.body.includes("TASK_STATE_COMPLETED")) return true;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return false;
    });
  });
});

const authOf = (token: string) => ({ serviceParameters: { Authorization: `Bearer ${token}` } });

/** The prompt in what a path showed: the first JSON string in it that is the prompt's. */
function promptIn(dump: string): string | undefined {
  for (const [, quoted] of dump.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    const text = JSON.parse(`"${quoted}"`) as string;
    if (text.startsWith("b64=")) return text;
  }
  return undefined;
}

/** A decoding that fails (what was shown is not that encoding) decodes to nothing. */
function safely(decode: () => string): string {
  try {
    return decode();
  } catch {
    return "";
  }
}
