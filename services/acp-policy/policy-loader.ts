import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ErrorCode } from "../../schemas/errors.ts";
import {
  type PolicyBundle,
  type PolicyFile,
  PolicyFileSchema,
  type PolicyRule,
} from "../../schemas/policy.ts";
import { describeIssues, LoomError } from "../kit/index.ts";
import { compileCondition } from "./conditions.ts";

/** The rules of every policy file, in file-name order, with a content version. */
export interface ActivePolicy {
  /** `<file versions>@<content hash>`: changes whenever any file does. */
  version: string;
  rules: PolicyRule[];
}

export interface PolicySource {
  name: string;
  text: string;
}

/** Reads a policy folder (every `*.yaml`/`*.yml`) or a single policy file. */
export async function readPolicySources(path: string): Promise<PolicySource[]> {
  if (!(await stat(path)).isDirectory())
    return [{ name: basename(path), text: await readFile(path, "utf8") }];
  const names = (await readdir(path)).filter((name) => /\.ya?ml$/.test(name)).sort();
  if (names.length === 0) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `no policy files (*.yaml) in ${path}`);
  }
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(join(path, name), "utf8") })));
}

export async function loadPolicyDir(dir: string): Promise<ActivePolicy> {
  return compilePolicy(await readPolicySources(dir), dir);
}

/** The policy a bundle from KV `loom_policy` holds, validated exactly as files are. */
export function loadPolicyBundle(bundle: PolicyBundle): ActivePolicy {
  return compilePolicy(bundle.files, "the applied policy");
}

/**
 * Validates policy files into one policy: each file against the schema, rule names unique across
 * files, every CEL condition and pattern compiled. Anything wrong refuses the whole policy.
 */
export function compilePolicy(sources: PolicySource[], where: string): ActivePolicy {
  const hash = createHash("sha256");
  const files: PolicyFile[] = [];
  for (const source of sources) {
    hash.update(source.text);
    files.push(parsePolicyFile(source.text, source.name));
  }
  const rules = files.flatMap((file) => file.rules);
  const duplicate = rules.find(
    (rule, index) => rules.findIndex((other) => other.name === rule.name) !== index,
  );
  if (duplicate !== undefined) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `policy rule "${duplicate.name}" is defined twice in ${where}`,
    );
  }
  const version = `${files.map((file) => file.version).join("+")}@${hash.digest("hex").slice(0, 12)}`;
  return { version, rules };
}

export function parsePolicyFile(text: string, source: string): PolicyFile {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (cause) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `${source} is not valid YAML: ${String(cause)}`, { cause });
  }
  const parsed = PolicyFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `${source}: ${describeIssues(parsed.error.issues)}`);
  }
  for (const rule of parsed.data.rules) checkExpressions(rule, source);
  return parsed.data;
}

/** CEL and regular expressions are checked when the policy loads, never first at decision time. */
function checkExpressions(rule: PolicyRule, source: string): void {
  try {
    if (rule.when !== undefined) compileCondition(rule.when, rule.name);
  } catch (error) {
    if (error instanceof LoomError) throw new LoomError(error.code, `${source}: ${error.message}`);
    throw error;
  }
  const patterns = [...(rule.violates?.patterns ?? []), ...(rule.obligations?.mask.patterns ?? [])];
  for (const pattern of patterns) {
    try {
      new RegExp(pattern, "u");
    } catch (cause) {
      throw new LoomError(
        ErrorCode.CONFIG_INVALID,
        `${source}: rule "${rule.name}": /${pattern}/ is not a valid regular expression`,
        { cause },
      );
    }
  }
}
