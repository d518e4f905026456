/**
 * A timeout that stops counting while paused: a call's own time counts against its deadline, the
 * time a person takes to answer a question the call asked (MCP elicitation) does not. Pauses nest;
 * the clock runs again once every pause has been resumed. Its signal aborts with `reason()` when
 * the running time reaches `ms`.
 */
export class PausableDeadline {
  readonly #controller = new AbortController();
  readonly #reason: () => unknown;
  #remainingMs: number;
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #pauses = 0;
  #cleared = false;

  constructor(ms: number, reason: () => unknown) {
    this.#remainingMs = ms;
    this.#reason = reason;
    this.#run();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  pause(): void {
    this.#pauses += 1;
    if (this.#pauses > 1 || this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#remainingMs -= performance.now() - this.#startedAt;
  }

  resume(): void {
    if (this.#pauses === 0) return;
    this.#pauses -= 1;
    if (this.#pauses === 0) this.#run();
  }

  /** Stops the clock for good (the call ended). */
  clear(): void {
    this.#cleared = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #run(): void {
    if (this.#cleared || this.#controller.signal.aborted) return;
    this.#startedAt = performance.now();
    this.#timer = setTimeout(() => this.#controller.abort(this.#reason()), Math.max(0, this.#remainingMs));
  }
}
