import type { KV } from "@nats-io/kv";
import { ErrorCode } from "../../schemas/errors.ts";
import { casWrite, LoomError, readEntry } from "../kit/index.ts";

/**
 * Each run's run token, kept apart from the run's record: in KV `loom_run_tokens`, which only the
 * orchestrator's NATS user may read or write (infra/nats/nats-server.conf), so that any replica
 * driving the run after a restart or a takeover finds it, and nobody else does. The token itself is
 * good only on `loom.v1.policy.decide.run`, where only the orchestrator may publish, for its run.
 * Each replica keeps the tokens it used in memory: a step's decision costs no extra round trip.
 */
export class RunTokens {
  readonly #kv: KV;
  readonly #cache = new Map<string, string>();

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /**
   * Stores the token of a run just accepted (before the run is driven), unless the run id has one
   * already: a second submission with the same run id, a redelivery or someone else reusing the id,
   * never replaces the token the run was started with (it would run on the other caller's rights).
   */
  async keepFirst(runId: string, token: string): Promise<void> {
    const written = await casWrite(this.#kv, runId, new TextEncoder().encode(token), undefined);
    if (written !== undefined) this.#cache.set(runId, token);
  }

  /** The run's token as `Bearer <token>`; a run without one cannot decide anything. */
  async authorization(runId: string): Promise<string> {
    let token = this.#cache.get(runId);
    if (token === undefined) {
      const entry = await readEntry(this.#kv, runId);
      if (entry === null) {
        throw new LoomError(
          ErrorCode.UNAUTHENTICATED,
          `run ${runId} has no run token to decide its steps with`,
        );
      }
      token = entry.string();
      this.#cache.set(runId, token);
    }
    return `Bearer ${token}`;
  }
}
