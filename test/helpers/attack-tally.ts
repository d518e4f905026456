import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";

/**
 * The classes of attack the security suite counts, one per kind of hole an outsider looks for.
 * Every attack names one; `test/security/summary.ts` prints the counts per class after the run.
 */
export const AttackClass = {
  TENANT_ISOLATION: "tenant-isolation",
  RUN_TOKENS: "run-tokens",
  RESOURCE_FACTS: "resource-facts",
  AUDIT_FORGERY: "audit-forgery",
  MASKING: "masking",
  WEBHOOKS: "webhooks",
  GRANT_REUSE: "grant-reuse",
  DENIAL_OF_SERVICE: "denial-of-service",
  BAD_MESSAGES: "bad-messages",
  TRUSTED_BUS: "trusted-bus",
  TOKENS: "tokens",
  BYPASS: "bypass",
  CONSOLE: "console",
  /** What listens where: HTTP listeners reachable from other hosts than the one Loom runs on. */
  EXPOSURE: "exposure",
  /**
   * A web page on a name its owner points at Loom's host (DNS rebinding), or on another site,
   * driving an HTTP listener through a visitor's browser: every route of every listener.
   */
  DNS_REBINDING: "dns-rebinding",
  /** Requests Loom sends to URLs a caller names (remote agents): internal addresses, port scans. */
  OUTBOUND_REQUESTS: "outbound-requests",
} as const;
export type AttackClass = (typeof AttackClass)[keyof typeof AttackClass];

/** Where each test worker appends its counts; set by the summary's global setup. */
export const TALLY_DIR_VARIABLE = "LOOM_ATTACK_TALLY_DIR";

export interface AttackOutcome {
  attackClass: AttackClass;
  name: string;
  refused: boolean;
}

function record(outcome: AttackOutcome): void {
  const dir = process.env[TALLY_DIR_VARIABLE];
  if (dir === undefined) return;
  mkdirSync(dir, { recursive: true });
  appendFileSync(join(dir, `${process.pid}.jsonl`), `${JSON.stringify(outcome)}\n`);
}

/**
 * One attack: `refused` answers whether the system said no in a way its user can see. An attack
 * that gets through fails the test and is counted as accepted.
 */
export async function attack(
  attackClass: AttackClass,
  name: string,
  refused: () => Promise<boolean>,
): Promise<void> {
  const ok = await refused();
  record({ attackClass, name, refused: ok });
  expect(ok, `attack accepted (${attackClass}): ${name}`).toBe(true);
}

/**
 * A control: the legitimate request beside an attack, which must succeed, so a defence that
 * refuses everything cannot pass for one that refuses the attack.
 */
export async function control(name: string, succeeded: () => Promise<boolean>): Promise<void> {
  expect(await succeeded(), `control failed: ${name}`).toBe(true);
}
