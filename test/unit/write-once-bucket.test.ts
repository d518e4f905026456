import type { StreamConfig } from "@nats-io/jetstream";
import { DiscardPolicy } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { Buckets } from "../../schemas/subjects.ts";
import { writeOnceBucketStream, writeOnceProblems } from "../../services/kit/jetstream.ts";

/** A stream's info as the server answers it: every limit present, 0 or -1 when unset. */
const asServed = (config: Partial<StreamConfig>) => ({ max_age: 0, ...config }) as StreamConfig;

describe("write-once buckets", () => {
  it("write-once - the pins bucket's own stream has no problem", () => {
    expect(writeOnceProblems(asServed(writeOnceBucketStream(Buckets.AUDIT_KEYS)))).toEqual([]);
  });

  it("write-once - each setting that lets a key be written again is named", () => {
    const good = asServed(writeOnceBucketStream(Buckets.AUDIT_KEYS));
    const named = (change: Partial<StreamConfig>) => writeOnceProblems({ ...good, ...change });
    expect(named({ max_msgs_per_subject: 5 })).toEqual(["it keeps 5 messages per key, not 1"]);
    expect(named({ discard_new_per_subject: false })).toEqual([
      "a second write to a key replaces the first (discard_new_per_subject is off)",
    ]);
    expect(named({ discard: DiscardPolicy.Old })).toEqual([
      "a second write to a key replaces the first (discard_new_per_subject is off)",
    ]);
    expect(named({ deny_delete: false })).toEqual(["its messages may be deleted (deny_delete is off)"]);
    expect(named({ deny_purge: false })).toEqual(["its keys may be purged (deny_purge is off)"]);
    expect(named({ max_age: 60_000_000_000 })).toEqual([
      "its keys expire (max_age is set) and may then be written again",
    ]);
  });
});
