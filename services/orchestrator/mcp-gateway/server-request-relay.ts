import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  type CreateMessageRequest,
  CreateMessageResultSchema,
  type ElicitRequest,
  ElicitResultSchema,
  McpError,
  type ServerNotification,
  type ServerRequest,
} from "@modelcontextprotocol/sdk/types.js";
import { ErrorCode } from "../../../schemas/errors.ts";
import { RelayedMethod, type ServerRequestRelay } from "../../../schemas/mcp-client-relay.ts";
import type { McpSession } from "../../../schemas/mcp-session.ts";
import { PolicyAction } from "../../../schemas/policy.ts";
import { authorize, LoomError } from "../../kit/index.ts";
import type { ClientAnswers, DispatchOptions } from "./operation-dispatch.ts";

/**
 * How a tool call's upstream server reaches the gateway's client: its sampling and elicitation
 * requests go to the client on the call's own SSE stream, for the capabilities the client
 * declared at initialize (the worker refuses the others, saying the client did not declare them).
 * Sampling is decided first as `llm.sample` on the server for the
 * caller's token, which stays here: the worker never holds it. acp-policy audits the decision;
 * the worker audits the elicitation (as digests).
 */
export function clientAnswers(
  options: DispatchOptions,
  caller: { session: McpSession; authorization: string },
  extra: RequestHandlerExtra<ServerRequest, ServerNotification>,
): ClientAnswers {
  const capabilities = caller.session.clientCapabilities;
  const relay = {
    sampling: capabilities.sampling !== undefined,
    elicitation: capabilities.elicitation !== undefined,
  };
  return {
    relay,
    async answer(relayed, call) {
      if (relayed.method === RelayedMethod.SAMPLING && relay.sampling) {
        await decideSampling(options, caller.authorization, relayed, call);
        return asked(() =>
          extra.sendRequest(
            { method: RelayedMethod.SAMPLING, params: relayed.params as CreateMessageRequest["params"] },
            CreateMessageResultSchema,
            { timeout: options.callTimeoutMs, signal: extra.signal },
          ),
        );
      }
      if (relayed.method === RelayedMethod.ELICITATION && relay.elicitation) {
        return asked(() =>
          extra.sendRequest(
            { method: RelayedMethod.ELICITATION, params: relayed.params as ElicitRequest["params"] },
            ElicitResultSchema,
            { timeout: options.elicitationTimeoutMs, signal: extra.signal },
          ),
        );
      }
      throw new LoomError(
        ErrorCode.INVALID_INPUT,
        `the gateway's client did not declare the capability for ${relayed.method}`,
      );
    },
  };
}

async function decideSampling(
  options: DispatchOptions,
  authorization: string,
  relayed: ServerRequestRelay,
  call: { runId: string; stepId: string },
): Promise<void> {
  await authorize(
    options.nc,
    {
      action: PolicyAction.LLM_SAMPLE,
      resource: { tool: relayed.server },
      arguments: { server: relayed.server, params: relayed.params },
      runId: call.runId,
      stepId: call.stepId,
    },
    { authorization, timeoutMs: options.policyTimeoutMs, what: `sampling through ${relayed.server}` },
  ).catch((refusal: unknown) => {
    if (refusal instanceof LoomError)
      options.log.warn({ mcp_server: relayed.server, code: refusal.code }, "sampling request refused");
    throw refusal;
  });
}

/** The client's answer; its refusal (an MCP error) travels as MCP_CLIENT_ERROR with its code. */
async function asked(send: () => Promise<Record<string, unknown>>): Promise<Record<string, unknown>> {
  try {
    return await send();
  } catch (error) {
    if (!(error instanceof McpError)) throw error;
    throw new LoomError(ErrorCode.MCP_CLIENT_ERROR, `the gateway's client answered: ${error.message}`, {
      details: { mcpCode: error.code },
    });
  }
}
