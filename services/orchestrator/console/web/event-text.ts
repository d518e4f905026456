import type { RunEvent } from "../../../../schemas/run.ts";

/** An event's message text, if it has one. */
export function textOf(event: RunEvent): string {
  if (!("statusUpdate" in event)) return "";
  const parts = event.statusUpdate.status.message?.parts ?? [];
  return parts.map((part) => ("text" in part && typeof part.text === "string" ? part.text : "")).join(" ");
}
