import type { KV } from "@nats-io/kv";
import { type PolicyBundle, PolicyBundleSchema } from "../../schemas/policy.ts";
import { type Logger, parsePayload, retryBrokerFailures } from "../kit/index.ts";
import { type ActivePolicy, loadPolicyBundle, loadPolicyDir } from "./policy-loader.ts";

/** The KV key of the active policy bundle in `loom_policy`. */
export const ACTIVE_POLICY_KEY = "active";

/**
 * The policy this replica decides with. It starts from the bundle last applied to KV
 * `loom_policy` (or, when none was, the policy folder) and follows the bucket: every replica
 * switches as soon as a new bundle arrives. A bundle that does not validate is logged and ignored,
 * and the running policy stays.
 */
export class PolicyStore {
  #active: ActivePolicy;
  readonly #log: Logger;

  private constructor(active: ActivePolicy, log: Logger) {
    this.#active = active;
    this.#log = log;
  }

  static async open(options: { kv: KV; dir: string; log: Logger }): Promise<PolicyStore> {
    const { kv, dir, log } = options;
    let initial: ActivePolicy | undefined;
    const entry = await retryBrokerFailures(() => kv.get(ACTIVE_POLICY_KEY));
    if (entry !== null && entry.operation === "PUT") {
      try {
        const bundle = parsePayload(PolicyBundleSchema, entry.value, "policy bundle");
        initial = loadPolicyBundle(bundle);
        await reportFolderIgnored({ dir, log, applied: initial, revision: entry.revision, bundle });
      } catch (error) {
        log.error({ err: error }, "the policy in loom_policy is invalid; using the policy folder");
      }
    }
    if (initial === undefined) {
      initial = await loadPolicyDir(dir);
      log.info({ policy_version: initial.version, dir }, "policy loaded from the policy folder");
    }
    const store = new PolicyStore(initial, log);
    const watcher = await retryBrokerFailures(() => kv.watch({ key: ACTIVE_POLICY_KEY, include: "updates" }));
    void (async () => {
      for await (const update of watcher) {
        if (update.operation === "PUT") store.#apply(update.value, update.revision);
      }
    })();
    return store;
  }

  get active(): ActivePolicy {
    return this.#active;
  }

  #apply(value: Uint8Array, revision: number): void {
    let bundle: PolicyBundle;
    try {
      bundle = parsePayload(PolicyBundleSchema, value, "policy bundle");
      const next = loadPolicyBundle(bundle);
      this.#log.info(
        { policy_version: next.version, previous_version: this.#active.version, revision },
        "policy switched",
      );
      this.#active = next;
    } catch (error) {
      this.#log.error(
        { err: error, revision, policy_version: this.#active.version },
        "refused an invalid policy bundle; the running policy stays",
      );
    }
  }
}

/**
 * An applied policy wins over the folder, also across restarts. Say so, and whether the folder now
 * holds something else, so that an edit to LOOM_POLICY_DIR is not ignored without a word.
 */
async function reportFolderIgnored(options: {
  dir: string;
  log: Logger;
  applied: ActivePolicy;
  revision: number;
  bundle: PolicyBundle;
}): Promise<void> {
  const { dir, log, applied, revision, bundle } = options;
  const source = {
    policy_version: applied.version,
    revision,
    applied_at: bundle.appliedAt,
    policy_dir: dir,
  };
  const folder = await loadPolicyDir(dir).then(
    (policy) => policy.version,
    (error: unknown) => `unreadable (${error instanceof Error ? error.message : String(error)})`,
  );
  if (folder === applied.version) {
    log.info(source, "policy loaded from loom_policy (loom policy apply); LOOM_POLICY_DIR holds the same");
    return;
  }
  log.warn(
    { ...source, folder_version: folder },
    `using the policy applied with \`loom policy apply\` (loom_policy revision ${revision}, ${applied.version}); ` +
      `LOOM_POLICY_DIR (${dir}) holds ${folder} and is not used while an applied policy exists: ` +
      `run \`loom policy apply ${dir}\` to use the folder`,
  );
}
