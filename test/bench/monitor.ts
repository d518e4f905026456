/**
 * What the bench reads from outside the processes it measures: nats-server's monitoring endpoint
 * (`-m <port>`) and `/proc/<pid>/stat`. Nothing here is instrumented inside Loom, so the figures
 * mean the same before and after any change to the services.
 */
import { execFileSync } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** The server-wide counters one workload is measured between. */
export interface ServerCounters {
  /** `/varz` in_msgs: messages clients published (JetStream's own replies and advisories excluded). */
  inMsgs: number;
  /** `/varz` out_msgs: messages the server delivered to clients. */
  outMsgs: number;
  /** `/subsz` num_inserts: subscriptions ever created, across accounts (internal ones included). */
  subscriptionsCreated: number;
  /** `/jsz` consumers alive right now. */
  consumers: number;
  /** Per stream, its last sequence: how many messages were ever stored in it (`/jsz?streams=true`). */
  lastSeq: Map<string, number>;
}

interface Varz {
  in_msgs: number;
  out_msgs: number;
}
interface Subsz {
  num_inserts: number;
}
interface Jsz {
  consumers: number;
  config: { sync_interval?: number | string; sync_always?: boolean };
  account_details?: { stream_detail?: { name: string; state: { last_seq: number } }[] }[];
}

/** nats-server's HTTP monitoring endpoint. */
export class NatsMonitor {
  readonly #base: string;

  constructor(port: number) {
    this.#base = `http://127.0.0.1:${port}`;
  }

  async #get<T>(path: string): Promise<T> {
    const response = await fetch(`${this.#base}${path}`);
    if (!response.ok) throw new Error(`nats-server monitoring ${path} answered ${response.status}`);
    return (await response.json()) as T;
  }

  async counters(): Promise<ServerCounters> {
    const [varz, subsz, jsz] = await Promise.all([
      this.#get<Varz>("/varz"),
      this.#get<Subsz>("/subsz"),
      this.#get<Jsz>("/jsz?accounts=true&streams=true"),
    ]);
    const lastSeq = new Map<string, number>();
    for (const account of jsz.account_details ?? [])
      for (const stream of account.stream_detail ?? []) lastSeq.set(stream.name, stream.state.last_seq);
    return {
      inMsgs: varz.in_msgs,
      outMsgs: varz.out_msgs,
      subscriptionsCreated: subsz.num_inserts,
      consumers: jsz.consumers,
      lastSeq,
    };
  }

  /**
   * Waits until clients publish at most `quietMsgs` messages in `windowMs` (at most `timeoutMs`):
   * work left behind by an earlier workload (a consumer catching up, say) must not be counted as
   * the next one's.
   */
  async settle(options = { windowMs: 500, quietMsgs: 10, timeoutMs: 60_000 }): Promise<void> {
    const deadline = Date.now() + options.timeoutMs;
    let last = (await this.#get<Varz>("/varz")).in_msgs;
    while (Date.now() < deadline) {
      await sleep(options.windowMs);
      const now = (await this.#get<Varz>("/varz")).in_msgs;
      if (now - last <= options.quietMsgs) return;
      last = now;
    }
  }

  /** The JetStream sync setting as the server reports it, in words. */
  async syncSetting(): Promise<string> {
    const { config } = await this.#get<Jsz>("/jsz");
    if (config.sync_always === true) return "sync_interval: always (fsync before every PubAck)";
    const interval = config.sync_interval;
    const seconds = typeof interval === "number" ? `${interval / 1e9} s` : String(interval ?? "default");
    return `sync_interval: ${seconds} (the default: a PubAck before the data is fsynced)`;
  }
}

/** What changed between two readings of the server's counters. */
export function counterDelta(before: ServerCounters, after: ServerCounters) {
  const writesByStream = new Map<string, number>();
  for (const [stream, seq] of after.lastSeq) {
    const written = seq - (before.lastSeq.get(stream) ?? 0);
    if (written > 0) writesByStream.set(stream, written);
  }
  return {
    inMsgs: after.inMsgs - before.inMsgs,
    outMsgs: after.outMsgs - before.outMsgs,
    subscriptionsCreated: after.subscriptionsCreated - before.subscriptionsCreated,
    consumersLeft: after.consumers - before.consumers,
    jetStreamWrites: [...writesByStream.values()].reduce((sum, n) => sum + n, 0),
    writesByStream,
  };
}
export type CounterDelta = ReturnType<typeof counterDelta>;

const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** CPU time (user + system) a process has used so far, in ms; its exited children are not included. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

/** Every live process below `pid` (children, grandchildren, ...), from `/proc/<n>/stat`'s ppid. */
export async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // The process ended while the list was read.
    }
  }
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const [child, ppid] of parents)
      if (ppid === parent) {
        found.push(child);
        walk(child);
      }
  };
  walk(pid);
  return found;
}
