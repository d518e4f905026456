import { createHash } from "node:crypto";

/** A UUID-shaped id that is the same every time for the same parts, and differs for others. */
function derivedId(parts: string[]): string {
  const hex = createHash("sha256").update(parts.join("\n")).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The `messageId` of the message a `delegate: {url}` step sends: the same for every sending of
 * one attempt of one step of one run, so a step re-sent after a crash is recognised by an agent
 * that deduplicates messages (Loom's A2A edge does, see `runIdOfMessage`).
 */
export function delegateMessageId(runId: string, stepId: string, attempt: number): string {
  return derivedId(["delegate", runId, stepId, String(attempt)]);
}

/**
 * The run a new A2A message starts: derived from the caller's credentials and its `messageId`, so
 * the same message sent again (the caller crashed before it heard back) is the same run and
 * follows it instead of starting a second one. Another caller's message with that id is another
 * run: a caller cannot reach a run it did not start by guessing message ids.
 */
export function runIdOfMessage(authorization: string | undefined, messageId: string): string {
  return derivedId(["a2a-message", authorization ?? "", messageId]);
}
