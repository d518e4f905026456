import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../schemas/errors.ts";
import { issueDevToken, principalFromAuthorization } from "../../services/kit/dev-token.ts";
import { LoomError } from "../../services/kit/errors.ts";

const encode = (claims: unknown) => `loom-dev.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;

/** The UNAUTHENTICATED LoomError that reading `authorization` must throw. */
function rejection(authorization: string | undefined): LoomError {
  try {
    principalFromAuthorization(authorization);
  } catch (error) {
    expect(error).toBeInstanceOf(LoomError);
    expect((error as LoomError).code).toBe(ErrorCode.UNAUTHENTICATED);
    return error as LoomError;
  }
  throw new Error(`expected ${String(authorization)} to be refused`);
}

describe("development tokens", () => {
  it("dev token - an issued token reads back as the same principal", () => {
    const token = issueDevToken({ sub: "ann", roles: ["analyst", "viewer"] });
    expect(token.startsWith("loom-dev.")).toBe(true);
    expect(principalFromAuthorization(`Bearer ${token}`)).toEqual({
      id: "ann",
      roles: ["analyst", "viewer"],
    });
  });

  it("dev token - the Bearer scheme is optional and case-insensitive", () => {
    const token = issueDevToken({ sub: "ada", roles: ["admin"] });
    expect(principalFromAuthorization(token).id).toBe("ada");
    expect(principalFromAuthorization(`bearer ${token}`).id).toBe("ada");
  });

  it("dev token - issuing refuses invalid claims", () => {
    expect(() => issueDevToken({ sub: "", roles: ["analyst"] })).toThrow();
    expect(() => issueDevToken({ sub: "ann", roles: [] })).toThrow();
  });

  it("dev token - refuses a missing token and says how to pass one", () => {
    expect(rejection(undefined).message).toContain("LOOM_TOKEN");
    rejection("");
  });

  it("dev token - refuses a token with the wrong prefix", () => {
    rejection("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.");
    rejection("Bearer loom-prod.abc");
    rejection("Basic dXNlcjpwYXNz");
  });

  it("dev token - refuses garbage after the prefix", () => {
    expect(rejection("Bearer loom-dev.!!!not-base64-json!!!").message).toContain("not readable");
    rejection(`Bearer loom-dev.${Buffer.from("{not json").toString("base64url")}`);
    rejection("Bearer loom-dev.");
  });

  it.each([
    ["no roles", { sub: "ann", roles: [] }],
    ["no subject", { roles: ["admin"] }],
    ["empty subject", { sub: "", roles: ["admin"] }],
    ["roles not a list", { sub: "ann", roles: "admin" }],
    ["an extra claim", { sub: "ann", roles: ["analyst"], admin: true }],
    ["a JSON array", ["ann", "admin"]],
    ["JSON null", null],
  ])("dev token - refuses claims with %s", (_what, claims) => {
    expect(rejection(`Bearer ${encode(claims)}`).message).toContain("claims");
  });
});
