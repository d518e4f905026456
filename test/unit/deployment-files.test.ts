import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { readPolicyServiceConfig } from "../../services/acp-policy/config.ts";
import { JaegerListeners } from "../../services/cli/jaeger.ts";
import { httpAllowListOf, requestRefusal } from "../../services/kit/index.ts";
import { readOrchestratorConfig } from "../../services/orchestrator/config.ts";
import { REPO_ROOT } from "../helpers/loom.ts";

/** A mount in compose's short (`source:target[:ro]`) or long syntax. */
type ComposeVolume =
  | string
  | { type: string; source: string; target: string; read_only?: boolean; volume?: { subpath?: string } };

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: ComposeVolume[];
  ports?: string[];
  profiles?: string[];
  deploy?: { replicas?: number };
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  entrypoint?: string[];
  networks?: { default?: { aliases?: string[] } };
}

const read = (path: string) => readFileSync(join(REPO_ROOT, path), "utf8");
const compose = parse(read("docker-compose.yml"), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const services = compose.services;
const LOOM_SERVICES = ["orchestrator", "acp-policy", "mcp-worker", "llm-agent"];
/** Bind-mounted folders Loom makes on first use rather than ships. */
const MADE_AT_RUN_TIME = new Set(["./.loom", "./.loom/keys"]);

describe("deployment - docker-compose.yml, infra/Dockerfile and their config files", () => {
  it("compose - every file it mounts or builds from exists in the repo", () => {
    for (const [name, service] of Object.entries(services)) {
      for (const volume of service.volumes ?? []) {
        const source = typeof volume === "string" ? (volume.split(":")[0] ?? "") : volume.source;
        if (!source.startsWith(".") || MADE_AT_RUN_TIME.has(source)) continue;
        expect(existsSync(join(REPO_ROOT, source)), `${name} mounts ${source}`).toBe(true);
      }
      if (service.build !== undefined) {
        expect(existsSync(join(REPO_ROOT, service.build.context, service.build.dockerfile))).toBe(true);
      }
      const script = service.command?.find((part) => part.endsWith(".ts"));
      if (script !== undefined)
        expect(existsSync(join(REPO_ROOT, script)), `${name} runs ${script}`).toBe(true);
    }
  });

  it("compose - Loom's services are built from infra/Dockerfile, export to Jaeger, and the worker runs twice", () => {
    for (const name of LOOM_SERVICES) {
      const service = services[name];
      expect(service?.build).toEqual({ context: ".", dockerfile: "infra/Dockerfile" });
      expect(service?.command).toEqual(["node", `services/${name}/main.ts`]);
      expect(service?.environment).toMatchObject({
        NATS_URL: "nats://nats:4222",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4318",
        LOOM_HTTP_PORT: "9464",
      });
    }
    expect(services["mcp-worker"]?.deploy?.replicas).toBe(2);
  });

  it("compose - Jaeger is the release infra/jaeger/install.sh builds, in the default configuration the e2e test proves", () => {
    const jaeger = services.jaeger;
    // Jaeger's Go module keeps v1 numbers: module v1.N is release v2.(N - 63).
    const moduleMinor = Number(
      /^VERSION="\$\{JAEGER_MODULE_VERSION:-v1\.(\d+)\.0\}"$/m.exec(read("infra/jaeger/install.sh"))?.[1],
    );
    expect(jaeger?.image).toBe(`jaegertracing/jaeger:2.${moduleMinor - 63}.0`);
    // No command and no config file: the image's all-in-one configuration, as test/e2e/jaeger.test.ts runs it.
    expect(jaeger?.command).toBeUndefined();
    expect(jaeger?.volumes).toBeUndefined();
    const published = [
      JaegerListeners.queryHttp,
      JaegerListeners.otlpGrpc,
      JaegerListeners.otlpHttp,
      JaegerListeners.jaegerThriftHttp,
    ].map(({ port }) => `127.0.0.1:${port}:${port}`);
    expect(jaeger?.ports).toEqual(published);
    for (const name of LOOM_SERVICES) {
      const endpoint = new URL(services[name]?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT ?? "");
      expect(Number(endpoint.port)).toBe(JaegerListeners.otlpHttp.port);
    }
  });

  it("compose - a 3-node NATS cluster by default and a single node under the `single` profile, both as `nats`", () => {
    const nodes = ["nats-1", "nats-2", "nats-3"].map((name) => services[name]);
    expect(nodes.map((node) => node?.environment?.NATS_SERVER_NAME)).toEqual(["nats-1", "nats-2", "nats-3"]);
    for (const node of nodes) {
      expect(node?.profiles).toEqual(["cluster"]);
      expect(node?.networks?.default?.aliases).toContain("nats");
      expect(node?.healthcheck?.test.join(" ")).toContain("/healthz");
    }
    expect(services["nats-single"]?.profiles).toEqual(["single"]);
    expect(services["nats-single"]?.networks?.default?.aliases).toContain("nats");
    expect(read(".env")).toMatch(/^COMPOSE_PROFILES=cluster$/m);
    // The routes, with the route password the cluster block asks of them, on each node's command.
    expect(read("infra/nats-cluster/cluster.conf")).toMatch(
      /authorization \{ user: route, password: \$LOOM_NATS_ROUTE_PASSWORD \}/,
    );
    for (const node of nodes) {
      // As compose hands it to the shell: `$$` is compose's escape for one `$`.
      const command = node?.command?.join(" ").replaceAll("$$", "$") ?? "";
      expect(command).toContain(". /etc/nats/loom/nats-cluster.env");
      for (const route of ["nats-1", "nats-2", "nats-3"])
        expect(command).toContain(`nats-route://route:\${LOOM_NATS_ROUTE_PASSWORD}@${route}:6222`);
    }
  });

  it("compose - every NATS node runs Loom's users, whose passwords exist before any node or service starts", () => {
    const passwords = services["nats-users"];
    expect(passwords?.entrypoint).toEqual(["/bin/sh", "-c"]);
    expect(passwords?.command).toEqual([
      "node services/cli/bin.ts nats passwords --data-dir /app/.loom && mkdir -p -m 0700 /app/.loom/keys && cp -R /app/.loom/nats-users/. /run/loom/",
    ]);
    expect(passwords?.volumes).toEqual(["./.loom:/app/.loom", "nats-passwords:/run/loom"]);
    for (const name of ["nats-1", "nats-2", "nats-3", "nats-single"]) {
      const node = services[name];
      const conf = name === "nats-single" ? "single.conf" : "cluster.conf";
      expect(node?.entrypoint).toEqual(["/bin/sh", "-c"]);
      // The passwords file's lines become the environment the included users refer to.
      expect(node?.command?.join(" ")).toContain(`exec nats-server -c /etc/nats/${conf} -sd /data/jetstream`);
      expect(node?.command?.join(" ")).toMatch(/^set -a && \. \/etc\/nats\/loom\/nats-users\.env /);
      expect(node?.volumes).toEqual(
        expect.arrayContaining([
          `./infra/nats-cluster/${conf}:/etc/nats/${conf}:ro`,
          "./infra/nats/nats-server.conf:/etc/nats/nats-server.conf:ro",
          "./.loom:/etc/nats/loom:ro",
        ]),
      );
      expect(node?.depends_on).toEqual({ "nats-users": { condition: "service_completed_successfully" } });
      // The include is relative to the node's config file, where the mount above puts it.
      expect(read(`infra/nats-cluster/${conf}`)).toMatch(/^include "nats-server.conf"$/m);
    }
    for (const name of LOOM_SERVICES) {
      const service = services[name];
      expect(service?.environment?.LOOM_NATS_PASSWORD_FILE).toBe("/run/loom/nats-password.env");
      // Its own user's folder of the volume alone (read-only), and nothing else of the passwords:
      // no other user's folder, no combined file, no ./.loom beyond the dev keys.
      const mounts = service?.volumes ?? [];
      expect(mounts).toContainEqual({
        type: "volume",
        source: "nats-passwords",
        target: "/run/loom",
        read_only: true,
        volume: { subpath: name },
      });
      const sources = mounts.map((volume) =>
        typeof volume === "string"
          ? volume.split(":")[0]
          : `${volume.source}/${volume.volume?.subpath ?? ""}`,
      );
      expect(sources.sort()).toEqual(
        name === "orchestrator" || name === "acp-policy"
          ? ["./.loom/keys", `nats-passwords/${name}`]
          : [`nats-passwords/${name}`],
      );
      expect(service?.depends_on).toMatchObject({
        "nats-users": { condition: "service_completed_successfully" },
      });
    }
  });

  it("compose - every published port is on the host's loopback: a dev-mode stack is not reachable from another machine", () => {
    const published = Object.entries(services).flatMap(([name, service]) =>
      (service.ports ?? []).map((port) => `${name} ${port}`),
    );
    expect(published.length).toBeGreaterThan(5);
    for (const port of published) expect(port).toMatch(/^\S+ 127\.0\.0\.1:\d+:\d+$/);
  });

  it("compose - Prometheus scrapes every Loom service, all replicas, on the port they serve /metrics on", () => {
    const prometheus = parse(read("infra/prometheus/prometheus.yml")) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    for (const name of LOOM_SERVICES) {
      const job = prometheus.scrape_configs.find((config) => config.job_name === name);
      expect(job?.dns_sd_configs).toEqual([expect.objectContaining({ names: [name], port: 9464 })]);
    }
  });

  it("compose - every way compose and infra/ reach a Loom service passes its Host check; a rebinding name does not", () => {
    const prometheus = read("infra/prometheus/prometheus.yml");
    const healthcheck = /HEALTHCHECK [^\n]*\\\n\s*CMD .*http:\/\/([\w.]+):/.exec(
      read("infra/Dockerfile"),
    )?.[1];
    expect(healthcheck).toBe("127.0.0.1");
    for (const name of LOOM_SERVICES) {
      // `${VAR:-default}` as compose reads it with VAR unset on the host.
      const environment = Object.fromEntries(
        Object.entries(services[name]?.environment ?? {}).map(([key, value]) => [
          key,
          value.replace(/\$\{\w+:-([^}]*)\}/g, "$1"),
        ]),
      );
      const config =
        name === "orchestrator" ? readOrchestratorConfig(environment) : readPolicyServiceConfig(environment);
      const allowed = httpAllowListOf({ ...config, publicUrl: environment.LOOM_A2A_PUBLIC_URL });
      const reached = [
        // Another container by service name, Prometheus by each replica's address (dns_sd A records),
        // the image's healthcheck inside the container, the host through the published port.
        ...LOOM_SERVICES.map((service) => `${service}:9464`),
        "172.18.0.5:9464",
        `${healthcheck}:9464`,
        "localhost:7410",
      ];
      expect(prometheus).toContain(`names: [${name}], type: A`);
      for (const host of reached)
        expect(requestRefusal({ host }, allowed), `${name} reached as ${host}`).toBeUndefined();
      if (name === "orchestrator") {
        // The console the host opens at the public URL posts with that Origin.
        const origin = new URL(environment.LOOM_A2A_PUBLIC_URL ?? "").origin;
        expect(requestRefusal({ host: "localhost:7410", origin }, allowed)).toBeUndefined();
      }
      expect(requestRefusal({ host: "attacker.example:7410" }, allowed)?.status).toBe(421);
    }
  });

  it("dockerfile - multi-stage on Node 24 slim, non-root, with a readiness healthcheck, copying only what exists", () => {
    const dockerfile = read("infra/Dockerfile");
    expect(dockerfile.match(/^FROM node:24-slim/gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n.*\/readyz/m);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    for (const [, source] of dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)) {
      expect(existsSync(join(REPO_ROOT, source ?? "")), `COPY ${source}`).toBe(true);
    }
  });
});
