import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunRecordSchema } from "../../schemas/run.ts";
import { Buckets } from "../../schemas/subjects.ts";
import { type Loom, startLoom, tokenFor } from "../helpers/loom.ts";

const analyst = tokenFor("alice", "analyst");

describe("e2e - persisted memory: context memory and large results by reference", () => {
  let loom: Loom;
  beforeAll(async () => {
    // A low inline limit, so a contact list is stored by reference in KV loom_results.
    loom = await startLoom({ env: { LOOM_RESULT_INLINE_MAX_BYTES: "256", LOOM_MEMORY_MAX_ENTRIES: "2" } });
  });
  afterAll(async () => {
    await loom?.[Symbol.asyncDispose]();
  });

  async function remember(contactId: string, context: string) {
    const { stdout } = await loom.cli(
      [
        "submit",
        "remember",
        "--context",
        context,
        "--input",
        JSON.stringify({ contactId }),
        "--watch",
        "--json",
      ],
      { token: analyst },
    );
    return JSON.parse(stdout) as { state: string; output: { earlierRuns: number; seenBefore?: unknown } };
  }

  it("memory - runs that share a context see the earlier ones as $memory, bounded by count", async () => {
    expect((await remember("c-1", "ctx-mem")).output.earlierRuns).toBe(0);
    expect((await remember("c-2", "ctx-mem")).output).toMatchObject({
      earlierRuns: 1,
      seenBefore: "Hello, Ada Lovelace",
    });
    expect((await remember("c-3", "ctx-mem")).output.earlierRuns).toBe(2);
    // Only the latest two entries are kept: the first run is gone.
    const fourth = await remember("c-4", "ctx-mem");
    expect(fourth.output).toMatchObject({
      earlierRuns: 2,
      seenBefore: ["Hello, Grace Hopper", "Hello, Margaret Hamilton"],
    });
    expect((await remember("c-1", "ctx-other")).output.earlierRuns).toBe(0);

    const shown = await loom.cli(["memory", "get", "ctx-mem", "--json"], { token: analyst });
    const memory = JSON.parse(shown.stdout) as { entries: Array<{ output: { greeting: string } }> };
    expect(memory.entries.map((entry) => entry.output.greeting)).toEqual([
      "Hello, Margaret Hamilton",
      "Hello, Karen Spärck Jones",
    ]);
    expect((await loom.cli(["memory", "clear", "ctx-mem"], { token: analyst })).code).toBe(0);
    expect(
      JSON.parse((await loom.cli(["memory", "get", "ctx-mem", "--json"], { token: analyst })).stdout).entries,
    ).toEqual([]);
    expect((await remember("c-2", "ctx-mem")).output.earlierRuns).toBe(0);
  });

  it("memory - a large step result is kept out of the run record and still seen by expressions", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loom-big-"));
    try {
      await writeFile(
        join(dir, "big.yaml"),
        `id: big-result
steps:
  - id: all
    call: crm.list_contacts
output: "{% { 'count': $count($steps.all.contacts), 'first': $steps.all.contacts[0].name } %}"
`,
      );
      const { stdout } = await loom.cli(["submit", join(dir, "big.yaml"), "--watch", "--json"], {
        token: analyst,
      });
      const summary = JSON.parse(stdout) as { runId: string; output: unknown };
      expect(summary.output).toEqual({ count: 4, first: "Ada Lovelace" });
      const entry = await (await new Kvm(loom.observer).open(Buckets.RUNS)).get(summary.runId);
      const record = RunRecordSchema.parse(entry?.json());
      const steps = (record.snapshot as { context: { steps: Record<string, unknown> } }).context.steps;
      expect(steps.all).toEqual({ $ref: `loom_results/${summary.runId}.all.1` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
