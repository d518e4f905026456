import { findJaeger, JAEGER_INSTALL_HINT, type LaunchedJaeger, launchJaeger } from "./jaeger.ts";
import { stopProcess } from "./nats-server.ts";

/** Words of the page a jaeger built without its UI assets (by `go build`) serves instead of the UI. */
export const PLACEHOLDER_UI = "This is a placeholder for the Jaeger UI home page";

/**
 * `npm start`'s Jaeger: the binary given with `--jaeger <binary>`, else one found on PATH or in
 * the Go bin folder, started with its default all-in-one configuration (traces in memory, the UI
 * on 16686, OTLP on 4317/4318), and its URL printed. Without `--jaeger`, a missing or failing
 * Jaeger is reported and Loom runs on without it; asked for by name, it must start.
 */
export async function startDevJaeger(
  choice: string | false | undefined,
): Promise<LaunchedJaeger | undefined> {
  if (choice === false) return undefined;
  const binary = choice ?? findJaeger(process.env);
  if (binary === undefined) {
    console.log(`Jaeger    not started: no jaeger binary; ${JAEGER_INSTALL_HINT}`);
    return undefined;
  }
  let jaeger: LaunchedJaeger;
  try {
    jaeger = await launchJaeger({ binary });
  } catch (error) {
    if (choice !== undefined) throw error;
    const reason = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error);
    console.log(`Jaeger    not started: ${reason}`);
    return undefined;
  }
  console.log(`Jaeger    ${jaeger.uiUrl} (started here, traces in memory)`);
  try {
    // Built from source, Jaeger has its query API but serves a placeholder page for the UI.
    const page = await (await fetch(jaeger.uiUrl)).text();
    if (page.includes(PLACEHOLDER_UI))
      console.log(
        "          this jaeger was built without its web UI: the link shows a placeholder page, the API " +
          "(/api/traces/<id>) answers; a release binary or the jaegertracing/jaeger image has the UI",
      );
  } catch (error) {
    await stopProcess(jaeger.child);
    throw error;
  }
  return jaeger;
}

/** What the services need to export their spans to this Jaeger. */
export function exportTo(jaeger: LaunchedJaeger): Record<string, string> {
  return { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpEndpoint };
}
