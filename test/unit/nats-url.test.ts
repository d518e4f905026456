import { describe, expect, it } from "vitest";
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
