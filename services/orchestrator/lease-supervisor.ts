/**
 * The clocks of a run this replica drives: its lease, renewed every third of its length so other
 * replicas leave the run alone, and its deadline, past which the run is expired.
 */
export class LeaseSupervisor {
  readonly #timers: NodeJS.Timeout[] = [];

  constructor(options: {
    leaseMs: number;
    /** The run's deadline (ISO time), if it has one. */
    deadlineAt: string | undefined;
    renew: () => void;
    expire: () => void;
  }) {
    this.#timers.push(setInterval(options.renew, options.leaseMs / 3));
    if (options.deadlineAt !== undefined) {
      this.#timers.push(setTimeout(options.expire, Math.max(0, Date.parse(options.deadlineAt) - Date.now())));
    }
  }

  stop(): void {
    for (const timer of this.#timers) clearTimeout(timer);
  }
}
