/**
 * Sliding-window call counters per principal and tool. They live in this replica's memory: with
 * N replicas behind the queue group a principal may get up to N times the limit, which keeps a
 * decision free of a round trip to shared state.
 */
export class RateLimiter {
  readonly #calls = new Map<string, number[]>();

  /** Records a call at `now` when it fits in the limit; false (and nothing recorded) when it does not. */
  tryAcquire(key: string, limit: { max: number; per: number }, now = Date.now()): boolean {
    const recent = (this.#calls.get(key) ?? []).filter((time) => time > now - limit.per);
    if (recent.length >= limit.max) {
      this.#calls.set(key, recent);
      return false;
    }
    recent.push(now);
    this.#calls.set(key, recent);
    return true;
  }
}
