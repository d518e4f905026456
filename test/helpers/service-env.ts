/**
 * What every test stack's services run with unless the test says otherwise: no trace exporter.
 * Under the default (OTLP to localhost:4318, where nothing listens in a test) acp-policy and the
 * llm-agent spend about 9 s of their SIGTERM shutdown retrying the export of their last spans,
 * and every stack a test stops waits for them. Spans still reach LOOM_SPANS, which `loom runs
 * trace` reads. A test of the exporters sets OTEL_TRACES_EXPORTER in its stack's env or in
 * process.env before it starts the stack, and that wins.
 */
export function testServiceEnv(): Record<string, string> {
  return { OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER ?? "none" };
}
