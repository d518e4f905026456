/**
 * A subscriber on `>` that sees every message published in the account, JetStream's replies
 * included, and counts the request round trips among them: a request is a message whose reply
 * subject is an inbox, and it is counted once a message is published to that inbox (its answer).
 * Every answered request is counted, whether its caller awaited the answer or not, so the count is
 * an upper bound of the awaited round trips. Long-poll pulls (`CONSUMER.MSG.NEXT`) are left out:
 * their answers are deliveries that arrive on the consumer's own schedule.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";

/** A token that names one run, task or writer (a uuid, a random base64url id) rather than a kind of message. */
const isId = (token: string) =>
  token.length >= 16 ||
  (token.length >= 8 && (/\d/.test(token) || (/[A-Z]/.test(token) && /[a-z]/.test(token))));

/** What a request was for, from its subject: ids masked, KV and JetStream API named by bucket and verb. */
export function requestKind(subject: string): string {
  const tokens = subject.split(".");
  if (subject.startsWith("$JS.API.DIRECT.GET.KV_")) return `KV get ${tokens[4]?.slice(3)}`;
  if (subject.startsWith("$KV.")) return `KV write ${tokens[1]}`;
  if (subject.startsWith("$JS.API.")) return tokens.slice(0, 4).join(".");
  return tokens
    .slice(0, 5)
    .map((token) => (isId(token) ? "*" : token))
    .join(".");
}

export interface TapCounts {
  /** Messages the tap saw: client publishes plus JetStream's replies, deliveries and advisories. */
  messages: number;
  /** Answered requests by kind (see `requestKind`). */
  roundTrips: Map<string, number>;
}

/** Starts counting now; `stop()` returns what was counted. */
export async function tapBus(nc: NatsConnection): Promise<{ stop(): Promise<TapCounts> }> {
  const asked = new Map<string, string>();
  const roundTrips = new Map<string, number>();
  let messages = 0;
  const sub: Subscription = nc.subscribe(">", {
    callback: (_error, message) => {
      messages++;
      const kind = asked.get(message.subject);
      if (kind !== undefined) {
        asked.delete(message.subject);
        roundTrips.set(kind, (roundTrips.get(kind) ?? 0) + 1);
      }
      const reply = message.reply;
      if (reply?.startsWith("_INBOX.") && !message.subject.startsWith("$JS.API.CONSUMER.MSG.NEXT."))
        asked.set(reply, requestKind(message.subject));
    },
  });
  await nc.flush();
  return {
    async stop() {
      await nc.flush();
      sub.unsubscribe();
      return { messages, roundTrips };
    },
  };
}
