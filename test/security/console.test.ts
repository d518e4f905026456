import { generateKeyPairSync, randomUUID } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Headers, Subjects } from "../../schemas/subjects.ts";
import { tracedHeaders } from "../../services/kit/index.ts";
import { AttackClass, attack, control } from "../helpers/attack-tally.ts";
import { type Loom, NatsUser, startLoom } from "../helpers/loom.ts";
import { callAs, contactApprovalWorkflow } from "../helpers/policy-stack.ts";
import { freePort } from "../helpers/ports.ts";
import { signJwt, tokenFor, validClaims } from "../helpers/tokens.ts";

const owner = tokenFor("ann", "analyst");
const stranger = tokenFor("sam", "analyst");
const manager = tokenFor("max", "manager");
const admin = tokenFor("root", "admin");
const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** Tokens acp-policy must refuse, whatever the route: each is an outsider's try. */
const BAD_TOKENS: Array<[string, string | undefined]> = [
  ["no token", undefined],
  ["a garbage token", "not-a-jwt"],
  [
    "a token signed by another key",
    signJwt(validClaims("mallory", ["admin"]), { key: generateKeyPairSync("ed25519").privateKey }),
  ],
  ["an expired token", signJwt(validClaims("ann", ["analyst"], { exp: now() - 600, iat: now() - 4000 }))],
  ["a token for another audience", signJwt(validClaims("ann", ["admin"], { aud: "someone-else" }))],
  ["an alg none token", `${b64({ alg: "none", typ: "JWT" })}.${b64(validClaims("mallory", ["admin"]))}.`],
];

interface Answer {
  status: number;
  body: string;
}

/**
 * Attacks on the web console's HTTP routes: every route without a token or with one acp-policy
 * refuses, another user's run by every route that reads or steers it (its live stream included),
 * the admin-only audit, the dev sign-in outside dev mode, and paths outside the console's files.
 */
describe("security - console: every route of the web console is decided by acp-policy for its caller", () => {
  let loom: Loom;
  let base: string;
  let runId: string;

  const call = (method: string, path: string, token: string | undefined, body?: unknown): Promise<Answer> =>
    callAs(base, method, path, token, body);

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    loom = await startLoom({ env: { LOOM_A2A_PORT: String(port) } });
    const started = await call("POST", "/console/api/runs", owner, {
      workflow: "crm-enrich",
      input: { contactId: "c-2" },
    });
    runId = (JSON.parse(started.body) as { runId: string }).runId;
    for (let tries = 0; tries < 100; tries++) {
      const view = await call("GET", `/console/api/runs/${runId}`, owner);
      if (view.body.includes("TASK_STATE_INPUT_REQUIRED")) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`run ${runId} never waited for approval`);
  }, 120_000);
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  /** Every API route, as a request any signed-in user could make. */
  const routes = (): Array<[string, string, unknown?]> => [
    ["GET", "/console/api/me"],
    ["GET", "/console/api/workflows"],
    ["GET", "/console/api/runs"],
    ["GET", "/console/api/runs/live"],
    ["POST", "/console/api/runs", { workflow: "hello", input: { contactId: "c-1" } }],
    ["GET", `/console/api/runs/${runId}`],
    ["GET", `/console/api/runs/${runId}/events`],
    ["GET", `/console/api/runs/${runId}/graph`],
    ["GET", `/console/api/runs/${runId}/trace`],
    ["POST", `/console/api/runs/${runId}/input`, { approved: true }],
    ["POST", `/console/api/runs/${runId}/cancel`, {}],
    ["POST", `/console/api/runs/${runId}/rerun`, {}],
    ["GET", "/console/api/inbox"],
    ["GET", "/console/api/inbox/live"],
    ["GET", "/console/api/tools"],
    ["GET", `/console/api/audit?run=${runId}`],
    ["GET", "/console/api/audit"],
    ["GET", "/console/api/audit/verify"],
    ["POST", "/console/api/policy/explain", { action: "tools.call", resource: { tool: "time.get_time" } }],
  ];

  it("security - console: every route refuses a request without a token or with one acp-policy refuses", async () => {
    for (const [method, path, body] of routes()) {
      for (const [name, token] of BAD_TOKENS) {
        await attack(
          AttackClass.CONSOLE,
          `${method} ${path.replace(runId, ":run")} with ${name}`,
          async () => {
            const answer = await call(method, path, token, body);
            return (
              answer.status === 401 && answer.body.includes("UNAUTHENTICATED") && !answer.body.includes(runId)
            );
          },
        );
      }
    }
    await control("the owner reads the run with a valid token", async () => {
      const answer = await call("GET", `/console/api/runs/${runId}`, owner);
      return answer.status === 200 && answer.body.includes(runId);
    });
    const view = await call("GET", `/console/api/runs/${runId}`, owner);
    expect(view.body).toContain("TASK_STATE_INPUT_REQUIRED");
  });

  it("security - console: another user's run answers 403 on every route that reads or steers it, its stream included", async () => {
    const runRoutes: Array<[string, string, unknown?]> = [
      ["GET", `/console/api/runs/${runId}`],
      ["GET", `/console/api/runs/${runId}/events`],
      ["GET", `/console/api/runs/${runId}/graph`],
      ["GET", `/console/api/runs/${runId}/trace`],
      ["GET", `/console/api/audit?run=${runId}`],
      ["POST", `/console/api/runs/${runId}/input`, { approved: true, comment: "mine now" }],
      ["POST", `/console/api/runs/${runId}/cancel`, {}],
      ["POST", `/console/api/runs/${runId}/rerun`, {}],
    ];
    for (const [method, path, body] of runRoutes) {
      await attack(
        AttackClass.CONSOLE,
        `${method} ${path.replace(runId, ":run")} as another analyst`,
        async () => {
          const answer = await call(method, path, stranger, body);
          return (
            answer.status === 403 && answer.body.includes("RUN_NOT_FOUND") && !answer.body.includes("Grace")
          );
        },
      );
    }
    await attack(
      AttackClass.CONSOLE,
      "another's run answers exactly as a run that does not exist",
      async () => {
        const unknown = randomUUID();
        const theirs = await call("GET", `/console/api/runs/${runId}`, stranger);
        const none = await call("GET", `/console/api/runs/${unknown}`, stranger);
        return (
          theirs.status === none.status &&
          theirs.body.replace(runId, "ID") === none.body.replace(unknown, "ID")
        );
      },
    );
    await attack(AttackClass.CONSOLE, "the run list as another analyst leaves the run out", async () => {
      const answer = await call("GET", "/console/api/runs", stranger);
      return answer.status === 200 && !answer.body.includes(runId);
    });
    await attack(AttackClass.CONSOLE, "the live run list as another analyst leaves the run out", async () => {
      const answer = await call("GET", "/console/api/runs/live", stranger);
      return answer.status === 200 && answer.body.startsWith("event: runs") && !answer.body.includes(runId);
    });
    await attack(
      AttackClass.CONSOLE,
      "an analyst's inbox does not offer the manager's approval",
      async () => {
        const answer = await call("GET", "/console/api/inbox", stranger);
        return answer.status === 200 && !answer.body.includes(runId);
      },
    );
    await control("the owner follows its run's stream", async () => {
      const answer = await call("GET", `/console/api/runs/${runId}/events`, owner);
      return answer.status === 200 && answer.body.startsWith("event: run\n") && answer.body.includes(runId);
    });
    await control("the owner's live list shows the run", async () => {
      const answer = await call("GET", "/console/api/runs/live", owner);
      return answer.status === 200 && answer.body.includes(runId);
    });
    const still = await call("GET", `/console/api/runs/${runId}`, owner);
    expect(still.body).toContain("TASK_STATE_INPUT_REQUIRED");
    await control("the manager's inbox offers the approval", async () => {
      const answer = await call("GET", "/console/api/inbox", manager);
      return (
        answer.status === 200 && answer.body.includes(runId) && answer.body.includes("Escalate Grace Hopper")
      );
    });
    await control("the manager approves from the console", async () => {
      const answer = await call("POST", `/console/api/runs/${runId}/input`, manager, { approved: true });
      return answer.status === 200;
    });
  });

  it("security - console: only the owner cancels and reruns its run from the console", async () => {
    const started = await call("POST", "/console/api/runs", owner, {
      workflow: "crm-enrich",
      input: { contactId: "c-2" },
    });
    const second = (JSON.parse(started.body) as { runId: string }).runId;
    await attack(AttackClass.CONSOLE, "another analyst cancels the run", async () => {
      const answer = await call("POST", `/console/api/runs/${second}/cancel`, stranger, {});
      return answer.status === 403;
    });
    await control("the owner cancels the run", async () => {
      const answer = await call("POST", `/console/api/runs/${second}/cancel`, owner, { reason: "test" });
      // The answer itself in the failure, should this ever fail: a status alone does not say why.
      expect(`${answer.status} ${answer.body}`).toContain("TASK_STATE_CANCELED");
      return answer.status === 200;
    });
    await attack(AttackClass.CONSOLE, "another analyst reruns the canceled run", async () => {
      const answer = await call("POST", `/console/api/runs/${second}/rerun`, stranger, {});
      return answer.status === 403 && answer.body.includes("RUN_NOT_FOUND");
    });
    await control("the owner reruns the canceled run", async () => {
      const answer = await call("POST", `/console/api/runs/${second}/rerun`, owner, {});
      return answer.status === 202 && answer.body.includes(`"runId"`);
    });
  });

  it("security - console: an approval's prompt reaches an approver masked as for a reader of the run", async () => {
    // A workflow may quote earlier steps' data in its prompt; the managers who answer it may not read
    // the run, so what they see of it is masked like a run they could read only masked.
    const leaking = contactApprovalWorkflow(
      "prompt-quotes-contact",
      "Confirm {% $steps.contact.name %}: SSN {% $steps.contact.ssn %}, email {% $steps.contact.email %}, phone {% $steps.contact.phone %}",
      ["manager", "admin"],
    );
    const leakingRun = randomUUID();
    await jetstream(await loom.connectAs(NatsUser.SUBMITTER)).publish(
      Subjects.RUNS_SUBMIT,
      JSON.stringify({ runId: leakingRun, workflow: leaking, input: {} }),
      { msgID: leakingRun, headers: tracedHeaders({ [Headers.AUTHORIZATION]: `Bearer ${owner}` }) },
    );
    const promptFor = async (token: string) => {
      for (let tries = 0; tries < 100; tries++) {
        const inbox = JSON.parse((await call("GET", "/console/api/inbox", token)).body) as {
          items: Array<{ runId: string; asked: { prompt: string } }>;
        };
        const item = inbox.items.find((candidate) => candidate.runId === leakingRun);
        if (item !== undefined) return item.asked.prompt;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      throw new Error(`run ${leakingRun} never reached the inbox`);
    };
    const managers = await promptFor(manager);
    for (const personal of ["900-65-4321", "grace@example.com", "+1 202 555 0147"]) {
      await attack(
        AttackClass.CONSOLE,
        `a manager's inbox shows ${personal} from the run's data`,
        async () => !managers.includes(personal),
      );
    }
    await control("the manager still sees the question, its personal data masked", async () =>
      managers.startsWith("Confirm Grace Hopper: SSN [masked]"),
    );
    await control("an admin, who may read the run, sees it as the run's reader does", async () =>
      (await promptFor(admin)).includes("900-65-4321"),
    );
    const canceled = await call("POST", `/console/api/runs/${leakingRun}/cancel`, owner, { reason: "test" });
    expect(canceled.status).toBe(200);
  });

  it("security - console: the audit of a period and its verification are for admins", async () => {
    for (const [name, token] of [
      ["an analyst", owner],
      ["a manager", manager],
    ] as const) {
      for (const path of ["/console/api/audit", "/console/api/audit/verify"]) {
        await attack(AttackClass.CONSOLE, `${path} as ${name}`, async () => {
          const answer = await call("GET", path, token);
          return answer.status === 403 && answer.body.includes("POLICY_DENIED");
        });
      }
    }
    await control("an admin verifies the audit", async () => {
      const answer = await call("GET", "/console/api/audit/verify", admin);
      return answer.status === 200 && (JSON.parse(answer.body) as { intact: boolean }).intact;
    });
    await control("the owner reads its run's audit trail", async () => {
      const answer = await call("GET", `/console/api/audit?run=${runId}`, owner);
      return answer.status === 200 && answer.body.includes(runId);
    });
  });

  it("security - console: no dev sign-in when the stack trusts an identity provider, no file outside the console's", async () => {
    await attack(
      AttackClass.CONSOLE,
      "dev sign-in as an admin on a stack with an identity provider",
      async () => {
        const answer = await call("POST", "/console/api/dev-sign-in", undefined, {
          subject: "mallory",
          roles: ["admin"],
        });
        return answer.status === 403 && !answer.body.includes('token":');
      },
    );
    for (const path of [
      "/console/web/..%2F..%2Fconfig.ts",
      "/console/web/%2E%2E%2Frouter.ts",
      "/console/web/..%2F..%2F..%2F..%2Fpackage.json",
      "/console/vendor/..%2F..%2Fpackage.json",
      "/console/vendor/jose.js",
      "/console/web/tsconfig.json",
    ]) {
      await attack(
        AttackClass.CONSOLE,
        `GET ${path}`,
        async () => (await call("GET", path, undefined)).status === 404,
      );
    }
    await control("the console's config says dev sign-in is off", async () => {
      const answer = await call("GET", "/console/api/config", undefined);
      return answer.status === 200 && (JSON.parse(answer.body) as { devSignIn: boolean }).devSignIn === false;
    });
    await control("a console module is served as JavaScript without its types", async () => {
      const response = await fetch(`${base}/console/web/main.ts`);
      const text = await response.text();
      return (
        response.status === 200 &&
        response.headers.get("content-type") === "text/javascript; charset=utf-8" &&
        !text.includes("import type") &&
        text.includes("render(")
      );
    });
  });
});
