import type { SpanRecord } from "../../../../schemas/telemetry.ts";
import { duration } from "./format.ts";
import { html } from "./html.ts";

/** Spans in tree order (children under their parent, by start), each with its depth. */
export function spanTree(spans: readonly SpanRecord[]): Array<{ span: SpanRecord; depth: number }> {
  const ids = new Set(spans.map((span) => span.spanId));
  const children = new Map<string | undefined, SpanRecord[]>();
  for (const span of spans) {
    const parent =
      span.parentSpanId !== undefined && ids.has(span.parentSpanId) ? span.parentSpanId : undefined;
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  for (const list of children.values()) list.sort((a, b) => a.startMs - b.startMs);
  const ordered: Array<{ span: SpanRecord; depth: number }> = [];
  const visit = (span: SpanRecord, depth: number) => {
    ordered.push({ span, depth });
    for (const child of children.get(span.spanId) ?? []) visit(child, depth + 1);
  };
  for (const root of children.get(undefined) ?? []) visit(root, 0);
  return ordered;
}

/** The run's trace as a waterfall: one row per span, its bar placed on the trace's timeline. */
export function Waterfall(props: { spans: SpanRecord[] }) {
  const start = Math.min(...props.spans.map((span) => span.startMs));
  const end = Math.max(...props.spans.map((span) => span.startMs + span.durationMs));
  const total = Math.max(end - start, 0.001);
  return html`<table class="waterfall" data-testid="waterfall">
    <thead><tr><th scope="col">Span</th><th scope="col">Service</th><th scope="col">Duration</th><th scope="col">Timeline (${duration(total)})</th></tr></thead>
    <tbody>
      ${spanTree(props.spans).map(
        ({ span, depth }) => html`<tr class=${span.status === "error" ? "span-error" : ""}>
          <td style=${`padding-left:${0.5 + depth}rem`}>${span.status === "error" ? "⚠ " : ""}${span.name}</td>
          <td>${span.service}</td>
          <td>${duration(span.durationMs)}</td>
          <td class="bar-cell"><span class="bar" style=${`margin-left:${((span.startMs - start) / total) * 100}%;width:${Math.max(0.5, (span.durationMs / total) * 100)}%`}></span></td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}
