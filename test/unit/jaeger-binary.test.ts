import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findJaeger } from "../../services/cli/jaeger.ts";

describe("cli - findJaeger looks where a user's jaeger is: PATH, then Go's bin folder", () => {
  let dir: string;
  const folder = (name: string) => join(dir, name);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "loom-find-jaeger-"));
    for (const name of ["path-a", "path-b", "gobin", "gopath/bin", "home/go/bin", "plain-file"]) {
      await mkdir(folder(name), { recursive: true });
    }
    for (const name of ["path-b", "gobin", "gopath/bin", "home/go/bin"]) {
      await writeFile(join(folder(name), "jaeger"), "#!/bin/sh\n");
      await chmod(join(folder(name), "jaeger"), 0o755);
    }
    // Present but not executable: not a binary to run.
    await writeFile(join(folder("path-a"), "jaeger"), "not a program");
    await chmod(join(folder("path-a"), "jaeger"), 0o644);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("cli - the first executable jaeger on PATH wins, a non-executable one is passed over", () => {
    expect(findJaeger({ PATH: `${folder("path-a")}:${folder("path-b")}`, GOBIN: folder("gobin") })).toBe(
      join(folder("path-b"), "jaeger"),
    );
  });

  it("cli - off PATH, GOBIN comes before GOPATH's bin; GOPATH's first entry counts", () => {
    expect(findJaeger({ PATH: folder("path-a"), GOBIN: folder("gobin"), GOPATH: folder("gopath") })).toBe(
      join(folder("gobin"), "jaeger"),
    );
    expect(findJaeger({ PATH: "", GOPATH: `${folder("gopath")}:${folder("elsewhere")}` })).toBe(
      join(folder("gopath/bin"), "jaeger"),
    );
  });

  it("cli - none anywhere is undefined; an empty GOPATH means ~/go, not a relative bin folder", () => {
    expect(findJaeger({ PATH: folder("path-a"), GOPATH: folder("plain-file") })).toBeUndefined();
    expect(findJaeger({ PATH: "", GOPATH: "", HOME: folder("home") })).toBe(
      join(folder("home/go/bin"), "jaeger"),
    );
  });
});
