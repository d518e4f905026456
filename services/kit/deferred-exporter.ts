import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";

/**
 * A span exporter whose module is loaded on the first export instead of at start: the OTLP and
 * Jaeger exporters take a second or more to load on a busy machine, which a service that must be
 * ready within a second of its start (a replica replacing a crashed one) cannot spend. The first
 * batch goes out once the module has loaded; a module that fails to load fails that batch.
 */
export class DeferredSpanExporter implements SpanExporter {
  readonly #load: () => Promise<SpanExporter>;
  #exporter: Promise<SpanExporter> | undefined;

  constructor(load: () => Promise<SpanExporter>) {
    this.#load = load;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.#exporter ??= this.#load();
    this.#exporter.then(
      (exporter) => exporter.export(spans, resultCallback),
      (error: unknown) =>
        resultCallback({
          code: ExportResultCode.FAILED,
          error: error instanceof Error ? error : new Error(String(error)),
        }),
    );
  }

  async forceFlush(): Promise<void> {
    await (await this.#exporter)?.forceFlush?.();
  }

  async shutdown(): Promise<void> {
    await (await this.#exporter)?.shutdown();
  }
}
