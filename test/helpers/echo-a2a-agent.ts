import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { AgentCard, Task } from "@a2a-js/sdk";
import { AgentEvent, type AgentExecutor, DefaultRequestHandler, InMemoryTaskStore } from "@a2a-js/sdk/server";
import { jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";
import express from "express";

/** A card for an agent whose JSON-RPC interface is at `interfaceUrl`. */
function cardJson(interfaceUrl: string): string {
  const card = AgentCard.fromJSON({
    name: "echo",
    description: "Answers every message with the data it was sent.",
    version: "1.0.0",
    supportedInterfaces: [{ url: interfaceUrl, protocolBinding: "JSONRPC", protocolVersion: "1.0" }],
    capabilities: { streaming: true },
    defaultInputModes: ["application/json"],
    defaultOutputModes: ["application/json"],
    skills: [{ id: "echo", name: "echo", description: "echo", tags: ["test"] }],
  });
  return JSON.stringify(AgentCard.toJSON(card));
}

/** Completes each task at once with one artifact: `{ echo: <the message's first data part> }`. */
const echoExecutor: AgentExecutor = {
  async execute(context, bus) {
    const part = context.userMessage.parts[0]?.content;
    const received = part?.$case === "data" ? part.value : part?.$case === "text" ? part.value : null;
    bus.publish(
      AgentEvent.task(
        Task.fromJSON({
          id: context.taskId,
          contextId: context.contextId,
          status: { state: "TASK_STATE_COMPLETED" },
          artifacts: [{ artifactId: randomUUID(), name: "echo", parts: [{ data: { echo: received } }] }],
        }),
      ),
    );
    bus.finished();
  },
  async cancelTask() {},
};

/** What an echo agent serves under `/agents/<name>/`: itself, or a card naming another interface. */
export type AgentRoute =
  /** A working agent: card and JSON-RPC interface under its own path. */
  | { kind: "echo" }
  /** A card (served by an allowed host) naming an interface anywhere. */
  | { kind: "card"; interfaceUrl: string }
  /** Every request answered with `status` and `Location: location`. */
  | { kind: "redirect"; status: number; location: string };

/**
 * An A2A agent built with the SDK's server side on a loopback port, serving the routes a test
 * names under `/agents/<name>/`, and keeping the path of every request it got.
 */
export async function startEchoAgent(
  port: number,
  routes: Record<string, AgentRoute>,
): Promise<{ url: string; paths: string[]; [Symbol.asyncDispose](): Promise<void> }> {
  const base = `http://127.0.0.1:${port}`;
  const paths: string[] = [];
  const app = express();
  app.use((req, _res, next) => {
    paths.push(req.originalUrl);
    next();
  });
  for (const [name, route] of Object.entries(routes)) {
    const prefix = `/agents/${name}`;
    if (route.kind === "redirect") {
      app.use(prefix, (_req, res) => {
        res.status(route.status).location(route.location).end();
      });
      continue;
    }
    const interfaceUrl = route.kind === "echo" ? `${base}${prefix}/rpc` : route.interfaceUrl;
    const card = cardJson(interfaceUrl);
    app.get(`${prefix}/.well-known/agent-card.json`, (_req, res) => {
      res.type("application/json").send(card);
    });
    if (route.kind === "echo") {
      const handler = new DefaultRequestHandler(
        AgentCard.fromJSON(JSON.parse(card)),
        new InMemoryTaskStore(),
        echoExecutor,
      );
      app.use(
        `${prefix}/rpc`,
        jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }),
      );
    }
  }
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(port, "127.0.0.1", () => resolve(listening));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paths,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
