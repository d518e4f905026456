import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, REDACTED } from "../../services/kit/logger.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString("utf8")));
      done();
    },
  });
  return { log: createLogger({ service: "test", level: "info", destination }), lines };
}

describe("logger - redaction", () => {
  it("logger - tokens, grants and masked personal fields never reach a line, wherever they sit", async () => {
    const { log, lines } = capture();
    log.info(
      {
        authorization: "Bearer secret-token",
        token: "secret-token",
        grant: "eyJ.grant.jws",
        headers: { Authorization: "Bearer secret-token" },
        request: { arguments: { email: "ada@example.com", ssn: "123-45-6789" } },
        contact: { email: "ada@example.com", phone: "+44 20 7946 0958", name: "Ada" },
      },
      "a call",
    );
    await new Promise((resolve) => setImmediate(resolve));
    const text = JSON.stringify(lines);
    for (const secret of ["secret-token", "eyJ.grant.jws", "ada@example.com", "123-45-6789", "7946"]) {
      expect(text).not.toContain(secret);
    }
    expect(lines[0]).toMatchObject({
      authorization: REDACTED,
      grant: REDACTED,
      headers: { Authorization: REDACTED },
      request: { arguments: { email: REDACTED, ssn: REDACTED } },
      contact: { email: REDACTED, name: "Ada" },
      service: "test",
      msg: "a call",
    });
  });
});
