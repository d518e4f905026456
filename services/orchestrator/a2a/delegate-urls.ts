import type { Workflow } from "../../../schemas/workflow.ts";
import { allSteps } from "../limits.ts";
import type { OutboundAllowList } from "./outbound-url.ts";

/**
 * Where the A2A client reads an agent's card, relative to the URL a step names (the SDK's own
 * `AGENT_CARD_PATH`, which `RemoteAgents` passes it explicitly so both agree): not imported from
 * the SDK, which most orchestrators never load.
 */
export const AGENT_CARD_PATH = ".well-known/agent-card.json";

/** The Agent Card URL of the agent a `delegate: {url}` step names. */
export function agentCardUrl(url: string): string {
  return new URL(AGENT_CARD_PATH, url).href;
}

/**
 * Refuses a definition any of whose `delegate: {url}` steps names a URL, or an Agent Card URL,
 * outside the allow-list (`DELEGATE_REFUSED`), without resolving hosts: cheap enough to run when a
 * definition is applied or submitted. The requests themselves are checked again as they leave.
 */
export function assertDelegatesListed(workflow: Workflow, allowList: OutboundAllowList): void {
  for (const step of allSteps(workflow.steps)) {
    if (!("delegate" in step) || step.delegate.url === undefined) continue;
    allowList.assertListed(step.delegate.url);
    allowList.assertListed(agentCardUrl(step.delegate.url));
  }
}
