import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AttackOutcome, TALLY_DIR_VARIABLE } from "../helpers/attack-tally.ts";

/**
 * Vitest global setup: gives every test worker one folder to append attack outcomes to, and
 * after the run prints the counts per class, the line CI logs keep.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "loom-attacks-"));
  process.env[TALLY_DIR_VARIABLE] = dir;
  return () => {
    const outcomes: AttackOutcome[] = readdirSync(dir).flatMap((file) =>
      readFileSync(join(dir, file), "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as AttackOutcome),
    );
    rmSync(dir, { recursive: true, force: true });
    if (outcomes.length === 0) return;
    const byClass = new Map<string, { tried: number; accepted: number }>();
    for (const { attackClass, refused } of outcomes) {
      const counts = byClass.get(attackClass) ?? { tried: 0, accepted: 0 };
      counts.tried += 1;
      if (!refused) counts.accepted += 1;
      byClass.set(attackClass, counts);
    }
    const accepted = outcomes.filter((outcome) => !outcome.refused).length;
    for (const [attackClass, counts] of [...byClass].sort()) {
      console.log(`security: ${attackClass}: ${counts.tried} attacks, ${counts.accepted} accepted`);
    }
    console.log(
      `security summary: ${outcomes.length} attacks over ${byClass.size} classes, ${accepted} accepted`,
    );
  };
}
