import type { ConsoleError } from "../../../../schemas/console.ts";

const TOKEN_KEY = "loom.console.token";

/** The signed-in token, kept for this tab only (sessionStorage), never in a URL or a cookie. */
export function storedToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function storeToken(token: string | undefined): void {
  if (token === undefined) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** A console API refusal: its HTTP status and the typed error the edge answered with. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** Listeners told when the edge refuses the token (expired, revoked): the app signs out. */
const refusedListeners = new Set<(error: ApiError) => void>();
export function onTokenRefused(listener: (error: ApiError) => void): () => void {
  refusedListeners.add(listener);
  return () => refusedListeners.delete(listener);
}

async function errorOf(response: Response): Promise<ApiError> {
  let body: ConsoleError | undefined;
  try {
    body = (await response.json()) as ConsoleError;
  } catch {
    body = undefined;
  }
  const error = new ApiError(
    response.status,
    body?.error.code ?? `HTTP_${response.status}`,
    body?.error.message ?? response.statusText,
  );
  if (response.status === 401) for (const listener of refusedListeners) listener(error);
  return error;
}

function headers(token: string | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return token === undefined ? extra : { ...extra, Authorization: `Bearer ${token}` };
}

/** `GET /console/api<path>` with the signed-in token. */
export async function get<T>(path: string): Promise<T> {
  const response = await fetch(`/console/api${path}`, { headers: headers(storedToken()) });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/** `POST /console/api<path>` of a JSON body with the signed-in token (or the one given). */
export async function post<T>(path: string, body: unknown, token = storedToken()): Promise<T> {
  const response = await fetch(`/console/api${path}`, {
    method: "POST",
    headers: headers(token, { "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

/**
 * Follows a Server-Sent Events stream of the console API. It is read with fetch, not EventSource,
 * so the token goes in the Authorization header like every other request. A stream that drops is
 * opened again; a refusal is reported and ends it. Returns how to stop.
 */
export function follow(
  path: string,
  onEvent: (event: string, data: unknown) => void,
  onError: (error: ApiError) => void,
): () => void {
  const controller = new AbortController();
  const open = async (): Promise<void> => {
    const response = await fetch(`/console/api${path}`, {
      headers: headers(storedToken(), { Accept: "text/event-stream" }),
      signal: controller.signal,
    });
    if (!response.ok || response.body === null) {
      onError(await errorOf(response));
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data === "") continue;
        const parsed = JSON.parse(data) as unknown;
        if (event === "error") {
          const { error } = parsed as ConsoleError;
          onError(new ApiError(error.code === "UNAUTHENTICATED" ? 401 : 403, error.code, error.message));
          return;
        }
        onEvent(event, parsed);
      }
    }
    if (!controller.signal.aborted) setTimeout(() => void open().catch(failed), 1_000);
  };
  const failed = (error: unknown) => {
    if (controller.signal.aborted) return;
    setTimeout(() => void open().catch(failed), 2_000);
    if (error instanceof ApiError) onError(error);
  };
  open().catch(failed);
  return () => controller.abort();
}
