/**
 * Policy globs: `*` matches any run of characters (dots and slashes included), `?` exactly one.
 * Path-style globs would let `crm.*` miss a tool named `crm.admin/export`, so a deny rule
 * could be sidestepped by a tool name with a slash in it.
 */
export function globMatches(glob: string, value: string): boolean {
  return compile(glob).test(value);
}

const compiled = new Map<string, RegExp>();

function compile(glob: string): RegExp {
  let regex = compiled.get(glob);
  if (regex === undefined) {
    const source = [...glob]
      .map((char) =>
        char === "*" ? "[\\s\\S]*" : char === "?" ? "[\\s\\S]" : char.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
      )
      .join("");
    regex = new RegExp(`^${source}$`);
    compiled.set(glob, regex);
  }
  return regex;
}
