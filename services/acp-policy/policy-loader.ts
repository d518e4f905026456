import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ErrorCode } from "../../schemas/errors.ts";
import { type PolicyFile, PolicyFileSchema, type PolicyRule } from "../../schemas/policy.ts";
import { describeIssues, LoomError } from "../kit/index.ts";

/** The rules of every file in the policy folder, in file-name order, with a content version. */
export interface ActivePolicy {
  /** `<file versions>@<content hash>`: changes whenever any file does. */
  version: string;
  rules: PolicyRule[];
}

export async function loadPolicyDir(dir: string): Promise<ActivePolicy> {
  const names = (await readdir(dir)).filter((name) => /\.ya?ml$/.test(name)).sort();
  if (names.length === 0) {
    throw new LoomError(ErrorCode.CONFIG_INVALID, `no policy files (*.yaml) in ${dir}`);
  }
  const hash = createHash("sha256");
  const files: PolicyFile[] = [];
  for (const name of names) {
    const text = await readFile(join(dir, name), "utf8");
    hash.update(text);
    files.push(parsePolicyFile(text, name));
  }
  const rules = files.flatMap((file) => file.rules);
  const duplicate = rules.find(
    (rule, index) => rules.findIndex((other) => other.name === rule.name) !== index,
  );
  if (duplicate !== undefined) {
    throw new LoomError(
      ErrorCode.CONFIG_INVALID,
      `policy rule "${duplicate.name}" is defined twice in ${dir}`,
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
  return parsed.data;
}
