import { createRequire } from "node:module";
import type { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { ErrorCode } from "../../schemas/errors.ts";
import { LoomError } from "./errors.ts";

/**
 * Ajv (some seventy modules) is loaded at the first check, not with every service: one that never
 * validates a schema does not pay for it at each start. `require` keeps `check` synchronous.
 */
const loadAjv = (): typeof AjvJsonSchemaValidator =>
  (
    createRequire(import.meta.url)("@modelcontextprotocol/sdk/validation/ajv") as {
      AjvJsonSchemaValidator: typeof AjvJsonSchemaValidator;
    }
  ).AjvJsonSchemaValidator;

type Check = (value: unknown) => { valid: boolean; errorMessage?: string | undefined };

/**
 * Validates values against JSON Schemas (tool inputSchemas, workflow inputs), compiling each
 * schema once. Uses the MCP SDK's Ajv setup so Loom and MCP servers judge a schema alike.
 */
export class JsonSchemaValidator {
  #validator: AjvJsonSchemaValidator | undefined;
  readonly #compiled = new WeakMap<object, Check>();

  /** Throws `code` (INVALID_INPUT unless told) naming `what` and the first problems when `value` does not fit. */
  assertValid(
    schema: Record<string, unknown>,
    value: unknown,
    what: string,
    code: ErrorCode = ErrorCode.INVALID_INPUT,
  ): void {
    const result = this.check(schema, value);
    if (!result.valid) {
      throw new LoomError(code, `${what} does not match its schema: ${result.errorMessage ?? "invalid"}`);
    }
  }

  /** Whether `value` fits `schema`, and if not, why. */
  check(schema: Record<string, unknown>, value: unknown): ReturnType<Check> {
    let check = this.#compiled.get(schema);
    if (check === undefined) {
      this.#validator ??= new (loadAjv())();
      check = this.#validator.getValidator(schema) as Check;
      this.#compiled.set(schema, check);
    }
    return check(value);
  }
}
