import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode } from "../../schemas/errors.ts";
import type { Workflow, WorkflowSummary } from "../../schemas/workflow.ts";
import { didYouMean, LoomError } from "../kit/index.ts";
import { checkWorkflowSchema, readWorkflowDefinition } from "../kit/workflow-definition.ts";
import { assertDelegatesListed } from "./a2a/delegate-urls.ts";
import type { OutboundAllowList } from "./a2a/outbound-url.ts";
import { checkExpressions } from "./expressions.ts";
import { assertDefinitionSizeWithin, assertStepsWithin, type RunLimits } from "./limits.ts";

/** Validates a definition (schema and expressions), with errors that name the offending field. */
export function parseWorkflow(raw: unknown, source: string): Workflow {
  const workflow = checkWorkflowSchema(raw, source);
  checkExpressions(workflow);
  return workflow;
}

/** Reads a YAML or JSON definition file and validates it (schema and expressions). */
export async function readWorkflowFile(path: string): Promise<Workflow> {
  const workflow = await readWorkflowDefinition(path);
  checkExpressions(workflow);
  return workflow;
}

/** The registered workflows, by id and version. */
export class WorkflowCatalog {
  readonly #versions = new Map<string, Map<number, Workflow>>();
  readonly #listeners: Array<(id: string) => void> = [];
  readonly #limits: RunLimits;
  readonly #delegates: OutboundAllowList;

  /** `delegates`: the URLs `delegate: {url}` steps may name (`LOOM_A2A_DELEGATE_ALLOW`). */
  constructor(limits: RunLimits, delegates: OutboundAllowList) {
    this.#limits = limits;
    this.#delegates = delegates;
  }

  /**
   * Validates a definition a caller sent (to apply, graph or run inline), within the size and step
   * limits, its remote agents within the delegation allow-list.
   */
  parse(raw: unknown, source: string): Workflow {
    assertDefinitionSizeWithin(raw, this.#limits);
    const workflow = parseWorkflow(raw, source);
    assertStepsWithin(workflow, this.#limits);
    assertDelegatesListed(workflow, this.#delegates);
    return workflow;
  }

  /** Called with each workflow id the first time any version of it is registered. */
  onNewWorkflow(listener: (id: string) => void): void {
    this.#listeners.push(listener);
    for (const id of this.#versions.keys()) listener(id);
  }

  /**
   * Reads every definition in a folder. One bad file must not keep the others from being served:
   * it is left out, and its error (naming the file and field) is returned for the log.
   */
  static async readDirectory(dir: string): Promise<{ workflows: Workflow[]; refused: LoomError[] }> {
    const names = (await readdir(dir)).filter((name) => /\.(ya?ml|json)$/.test(name)).sort();
    const results = await Promise.allSettled(names.map((name) => readWorkflowFile(join(dir, name))));
    const workflows: Workflow[] = [];
    const refused: LoomError[] = [];
    for (const result of results) {
      if (result.status === "fulfilled") workflows.push(result.value);
      else if (result.reason instanceof LoomError) refused.push(result.reason);
      else throw result.reason;
    }
    return { workflows, refused };
  }

  register(workflow: Workflow): void {
    const known = this.#versions.get(workflow.id);
    const versions = known ?? new Map<number, Workflow>();
    versions.set(workflow.version, workflow);
    this.#versions.set(workflow.id, versions);
    if (known === undefined) for (const listener of this.#listeners) listener(workflow.id);
  }

  ids(): string[] {
    return [...this.#versions.keys()].sort();
  }

  /** Every registered workflow: its versions, oldest first, and the latest one's description. */
  summaries(): WorkflowSummary[] {
    return this.ids().map((id) => {
      const latest = this.resolve(id);
      const versions = [...(this.#versions.get(id)?.keys() ?? [])].sort((a, b) => a - b);
      return {
        id,
        versions,
        ...(latest.description === undefined ? {} : { description: latest.description }),
        steps: latest.steps.length,
      };
    });
  }

  /** `hello` is the latest version, `hello@2` a pinned one; an inline definition is validated as is. */
  resolve(reference: string | Record<string, unknown>): Workflow {
    if (typeof reference !== "string") return this.parse(reference, "inline workflow");
    const [id = "", pinned] = reference.split("@");
    const versions = this.#versions.get(id);
    if (versions === undefined) {
      const known = this.ids().join(", ") || "none";
      throw new LoomError(
        ErrorCode.UNKNOWN_WORKFLOW,
        `no workflow "${id}" is registered${didYouMean(id, this.ids())} (registered: ${known})`,
      );
    }
    const version = pinned === undefined ? Math.max(...versions.keys()) : Number(pinned);
    const workflow = versions.get(version);
    if (workflow === undefined) {
      const known = [...versions.keys()].sort((a, b) => a - b).join(", ");
      throw new LoomError(
        ErrorCode.UNKNOWN_WORKFLOW,
        `workflow "${id}" has no version ${pinned} (registered versions: ${known})`,
      );
    }
    return workflow;
  }
}
