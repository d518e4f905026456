import { useEffect, useState } from "preact/hooks";

/** The console's views, from its URL under /console. */
export type View =
  | { page: "runs" }
  | { page: "run"; runId: string }
  | { page: "inbox" }
  | { page: "tools" }
  | { page: "audit"; runId?: string }
  | { page: "policy" };

export function viewOf(location: Pick<Location, "pathname" | "search">): View {
  const path = location.pathname.replace(/^\/console\/?/, "").replace(/\/$/, "");
  const [first, second] = path.split("/");
  if (first === "runs" && second !== undefined && second !== "")
    return { page: "run", runId: decodeURIComponent(second) };
  if (first === "inbox" || first === "tools" || first === "policy") return { page: first };
  if (first === "audit") {
    const runId = new URLSearchParams(location.search).get("run");
    return runId === null ? { page: "audit" } : { page: "audit", runId };
  }
  return { page: "runs" };
}

/** Goes to a console URL without reloading the page. */
export function navigate(href: string): void {
  history.pushState(null, "", href);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** The current view, following navigation and the browser's back and forward. */
export function useView(): View {
  const [view, setView] = useState(() => viewOf(location));
  useEffect(() => {
    const changed = () => setView(viewOf(location));
    addEventListener("popstate", changed);
    return () => removeEventListener("popstate", changed);
  }, []);
  return view;
}

/** Props of an in-app link: a real href (keyboard, new tab) that navigates without a reload. */
export function linkTo(href: string): { href: string; onClick: (event: MouseEvent) => void } {
  return {
    href,
    onClick: (event: MouseEvent) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      navigate(href);
    },
  };
}
