import { describe, expect, it } from "vitest";
import { isToolTaskInbox, toolTaskInboxOf } from "../../schemas/nats-users.ts";
import { natsServerOptions } from "../../services/kit/nats-url.ts";

describe("NATS URLs with credentials", () => {
  it("nats url - user and password are lifted out of every URL", () => {
    expect(
      natsServerOptions("nats://orchestrator:s3cr%40t@127.0.0.1:4222,nats://orchestrator:s3cr%40t@h2:4222"),
    ).toEqual({
      servers: ["nats://127.0.0.1:4222", "nats://h2:4222"],
      user: "orchestrator",
      pass: "s3cr@t",
      inboxPrefix: "_INBOX.orchestrator",
    });
  });

  it("nats url - plain URLs pass through without credentials", () => {
    expect(natsServerOptions("nats://127.0.0.1:4222")).toEqual({ servers: ["nats://127.0.0.1:4222"] });
  });
});

describe("tool-task inboxes", () => {
  it("nats url - a tool task is answered under the asker's tool-task inbox and nowhere else", () => {
    expect(toolTaskInboxOf("orchestrator")).toBe("_INBOX.orchestrator.tasks");
    expect(isToolTaskInbox("_INBOX.orchestrator.tasks.4JKer8QFiqWWpYoUUAgk0k.7")).toBe(true);
    for (const subject of [
      "_INBOX.orchestrator.4JKer8QFiqWWpYoUUAgk0k.RZlJi4Gt",
      "_INBOX.orchestrator.tasks",
      "_INBOX.orchestrator.tasksx.1",
      "_INBOX.orchestrator.tasks.>",
      "_INBOX.orchestrator.tasks.*",
      "loom.v1.policy.decide",
      "_INBOX.a.b.tasks.1",
    ]) {
      expect(isToolTaskInbox(subject), subject).toBe(false);
    }
  });
});
