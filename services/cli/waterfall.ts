import type { SpanRecord } from "../../schemas/telemetry.ts";

const BAR_WIDTH = 40;
const NAME_WIDTH = 44;

/**
 * Draws spans as a terminal waterfall: one line per span in tree order (children under their
 * parent, by start time), its service and duration, and a bar placed on the trace's timeline.
 * A span whose parent is not among `spans` (a process that published none) starts a new tree.
 */
export function drawWaterfall(spans: readonly SpanRecord[]): string {
  if (spans.length === 0) return "";
  const ids = new Set(spans.map((span) => span.spanId));
  const children = new Map<string | undefined, SpanRecord[]>();
  for (const span of spans) {
    const parent =
      span.parentSpanId !== undefined && ids.has(span.parentSpanId) ? span.parentSpanId : undefined;
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  for (const list of children.values()) list.sort((a, b) => a.startMs - b.startMs);

  const start = Math.min(...spans.map((span) => span.startMs));
  const end = Math.max(...spans.map((span) => span.startMs + span.durationMs));
  const total = Math.max(end - start, 0.001);
  const services = Math.max(...spans.map((span) => span.service.length));
  const lines = [
    `${"span".padEnd(NAME_WIDTH)}  ${"service".padEnd(services)}  ${"ms".padStart(9)}  0 ms${`${formatMs(total)} ms`.padStart(BAR_WIDTH - 4)}`,
  ];
  const visit = (span: SpanRecord, depth: number) => {
    const name = `${"  ".repeat(depth)}${span.status === "error" ? "! " : ""}${span.name}`;
    const offset = Math.min(BAR_WIDTH - 1, Math.floor(((span.startMs - start) / total) * BAR_WIDTH));
    const width = Math.max(
      1,
      Math.min(BAR_WIDTH - offset, Math.round((span.durationMs / total) * BAR_WIDTH)),
    );
    lines.push(
      [
        truncate(name, NAME_WIDTH).padEnd(NAME_WIDTH),
        span.service.padEnd(services),
        formatMs(span.durationMs).padStart(9),
        `${" ".repeat(offset)}${"█".repeat(width)}`,
      ].join("  "),
    );
    for (const child of children.get(span.spanId) ?? []) visit(child, depth + 1);
  };
  for (const root of children.get(undefined) ?? []) visit(root, 0);
  return lines.join("\n");
}

function formatMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}
