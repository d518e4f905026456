import { isDeepStrictEqual } from "node:util";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  WorkflowApplyContract,
  WorkflowGraphContract,
  WorkflowListContract,
  WorkflowShowContract,
} from "../../schemas/contracts.ts";
import { ErrorCode } from "../../schemas/errors.ts";
import { PolicyAction } from "../../schemas/policy.ts";
import { Subjects } from "../../schemas/subjects.ts";
import { type Workflow, WorkflowSchema } from "../../schemas/workflow.ts";
import {
  authorize,
  encodePayload,
  type Logger,
  LoomError,
  parsePayload,
  retryBrokerFailures,
  serve,
} from "../kit/index.ts";
import { toMermaid } from "./mermaid.ts";
import { compileWorkflow } from "./run-machine.ts";
import type { WorkflowCatalog } from "./workflow-catalog.ts";

const QUEUE = "orchestrator-workflows";

function versionKey(workflow: Workflow): string {
  return `${workflow.id}.${workflow.version}`;
}

/**
 * Registered workflow versions live in KV `loom_workflows` (`<id>.<version>`), written once each:
 * every orchestrator replica watches the bucket into its catalog, so a version applied anywhere
 * is runnable everywhere, and a version never changes once registered.
 */
export class WorkflowRegistry {
  readonly #kv: KV;
  readonly #catalog: WorkflowCatalog;
  readonly #log: Logger;

  constructor(kv: KV, catalog: WorkflowCatalog, log: Logger) {
    this.#kv = kv;
    this.#catalog = catalog;
    this.#log = log;
  }

  /** Registers a version; the same content again is a no-op, other content under that version is refused. */
  async apply(workflow: Workflow): Promise<boolean> {
    const payload = encodePayload(WorkflowSchema, workflow, "workflow");
    try {
      await this.#kv.create(versionKey(workflow), payload);
      this.#catalog.register(workflow);
      return true;
    } catch (error) {
      const existing = await this.#kv.get(versionKey(workflow));
      if (existing === null) throw error;
      const registered = parsePayload(WorkflowSchema, existing.value, `workflow ${versionKey(workflow)}`);
      if (isDeepStrictEqual(registered, workflow)) return false;
      throw new LoomError(
        ErrorCode.WORKFLOW_VERSION_EXISTS,
        `${workflow.id} version ${workflow.version} is registered with other content; give this one version ${workflow.version + 1}`,
      );
    }
  }

  /** Registers the files of the workflows folder (a differing registered version wins), then follows the bucket. */
  async start(seed: Workflow[]): Promise<void> {
    for (const workflow of seed) {
      try {
        await retryBrokerFailures(() => this.apply(workflow));
      } catch (error) {
        if (!(error instanceof LoomError) || error.code !== ErrorCode.WORKFLOW_VERSION_EXISTS) throw error;
        this.#log.warn({ workflow: workflow.id, version: workflow.version }, error.message);
      }
    }
    const watcher = await retryBrokerFailures(() => this.#kv.watch());
    void (async () => {
      for await (const entry of watcher) {
        if (entry.operation !== "PUT") continue;
        try {
          this.#catalog.register(parsePayload(WorkflowSchema, entry.value, `workflow ${entry.key}`));
        } catch (error) {
          this.#log.error({ err: error, key: entry.key }, "unreadable workflow version skipped");
        }
      }
    })();
  }

  /**
   * Serves `loom workflow apply` (a `workflow.apply` decision for the caller), `graph`, `list` and
   * `show`. `tools` is KV `loom_tools`: apply warns about calls to tools no worker offers now (they
   * may come later, so it is no error).
   */
  serve(nc: NatsConnection, tools: KV, policyTimeoutMs: number): { stop(): Promise<void> } {
    const apply = serve(nc, {
      subject: Subjects.WORKFLOWS_APPLY,
      queue: QUEUE,
      contract: WorkflowApplyContract,
      log: this.#log,
      handle: async ({ definition }, context) => {
        const workflow = this.#catalog.parse(definition, "workflow");
        await authorize(
          nc,
          { action: PolicyAction.WORKFLOW_APPLY, resource: { workflow: workflow.id } },
          {
            authorization: context.authorization,
            timeoutMs: policyTimeoutMs,
            what: `registering ${workflow.id}`,
          },
        );
        const created = await this.apply(workflow);
        const warnings = await missingTools(workflow, tools);
        this.#log.info(
          { workflow: workflow.id, version: workflow.version, created, warnings },
          "workflow applied",
        );
        return { id: workflow.id, version: workflow.version, created, warnings };
      },
    });
    const list = serve(nc, {
      subject: Subjects.WORKFLOWS_LIST,
      queue: QUEUE,
      contract: WorkflowListContract,
      log: this.#log,
      handle: async () => ({ workflows: this.#catalog.summaries() }),
    });
    const show = serve(nc, {
      subject: Subjects.WORKFLOWS_SHOW,
      queue: QUEUE,
      contract: WorkflowShowContract,
      log: this.#log,
      handle: async ({ id, version }) => ({
        workflow: this.#catalog.resolve(version === undefined ? id : `${id}@${version}`),
      }),
    });
    const graph = serve(nc, {
      subject: Subjects.WORKFLOWS_GRAPH,
      queue: QUEUE,
      contract: WorkflowGraphContract,
      log: this.#log,
      handle: async ({ workflow: reference }) => {
        const workflow =
          typeof reference === "string"
            ? this.#catalog.resolve(reference)
            : this.#catalog.parse(reference, "workflow");
        return { id: workflow.id, version: workflow.version, mermaid: toMermaid(compileWorkflow(workflow)) };
      },
    });
    return {
      async stop() {
        await Promise.all([apply.stop(), graph.stop(), list.stop(), show.stop()]);
      },
    };
  }
}

/** The `call` steps (nested ones included) whose tool no worker has registered in `loom_tools`. */
async function missingTools(workflow: Workflow, tools: KV): Promise<string[]> {
  const calls = workflow.steps.flatMap((step) => [
    step,
    ...("parallel" in step ? step.parallel : []),
    ...("onError" in step && step.onError !== undefined ? step.onError.steps : []),
  ]);
  const warnings: string[] = [];
  for (const step of calls) {
    if (!("call" in step) || !/^[A-Za-z0-9_.-]+$/.test(step.call)) continue;
    const entry = await tools.get(step.call);
    if (entry === null || entry.operation !== "PUT") {
      warnings.push(`step ${step.id}: no worker offers tool ${step.call} now (see \`loom tools list\`)`);
    }
  }
  return warnings;
}
