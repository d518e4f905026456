import type { KV } from "@nats-io/kv";
import { ErrorCode } from "../../schemas/errors.ts";
import { type Workflow, WorkflowSchema } from "../../schemas/workflow.ts";
import { digestOf } from "../kit/digest.ts";
import { encodePayload, LoomError, parsePayload, readEntry, retryBrokerFailures } from "../kit/index.ts";

const PREFIX = "definition.";
const CACHE_SIZE = 256;

/**
 * The definitions runs started with, in KV `loom_results` once each under their digest, so a
 * run's record names its definition instead of carrying it: a write after each transition then
 * does not grow with the workflow's size. A key never changes value, so no write can race another.
 */
export class DefinitionStore {
  readonly #kv: KV;
  /** Keys of definitions this process stored or read, by the parsed object (records share it). */
  readonly #keys = new WeakMap<Workflow, string>();
  /** Definitions by key, least recently used first. */
  readonly #cache = new Map<string, Workflow>();

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** The key of `workflow` when this process stored or read it already: no store call needed. */
  keyOf(workflow: Workflow): string | undefined {
    return this.#keys.get(workflow);
  }

  /** Stores `workflow` (once) and returns its key. */
  async put(workflow: Workflow): Promise<string> {
    const known = this.#keys.get(workflow);
    if (known !== undefined) return known;
    const key = `${PREFIX}${digestOf(workflow)}`;
    if (!this.#cache.has(key)) {
      const payload = encodePayload(WorkflowSchema, workflow, "workflow");
      await retryBrokerFailures(() => this.#kv.put(key, payload));
    }
    this.#remember(key, workflow);
    return key;
  }

  async get(key: string): Promise<Workflow> {
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#remember(key, cached);
      return cached;
    }
    const entry = await readEntry(this.#kv, key);
    if (entry === null) {
      throw new LoomError(ErrorCode.INTERNAL, `the stored definition ${key} is missing`);
    }
    const workflow = parsePayload(WorkflowSchema, entry.value, `stored definition ${key}`);
    this.#remember(key, workflow);
    return workflow;
  }

  #remember(key: string, workflow: Workflow): void {
    this.#keys.set(workflow, key);
    this.#cache.delete(key);
    this.#cache.set(key, workflow);
    if (this.#cache.size > CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value as string);
  }
}
