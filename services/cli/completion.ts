import type { Command } from "commander";

/** Shells `loom completion` writes a script for. */
export const COMPLETION_SHELLS = ["bash", "zsh"] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

function words(command: Command): string[] {
  return [
    ...command.commands.map((sub) => sub.name()),
    ...command.options.map((option) => option.long ?? option.short ?? "").filter((flag) => flag !== ""),
  ];
}

/**
 * A completion script for `loom`'s commands, subcommands and options, made from the command tree
 * itself so it never falls behind. zsh runs the bash script through bashcompinit.
 */
export function completionScript(program: Command, shell: CompletionShell): string {
  const cases = program.commands
    .filter((command) => command.commands.length > 0 || command.options.length > 0)
    .map((command) => `    ${command.name()}) words="${words(command).join(" ")}" ;;`);
  const bash = `_loom_complete() {
  local current="\${COMP_WORDS[COMP_CWORD]}" words
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="${words(program).join(" ")}"
  else
    case "\${COMP_WORDS[1]}" in
${cases.join("\n")}
      *) words="" ;;
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$current"))
}
complete -F _loom_complete loom
`;
  return shell === "bash" ? bash : `autoload -U +X bashcompinit && bashcompinit\n${bash}`;
}
