// The SSE connection to /api/stream. EventSource reconnects by itself after a
// dropped connection ("reconnecting"); when the browser gives up (readyState
// CLOSED, e.g. a 5xx on reconnect) or is offline, we retry with backoff
// ("offline"). The server sends a fresh snapshot on every connect, so nothing
// is lost while disconnected: the page keeps showing the last data meanwhile.

import { toSnapshot, type Snapshot } from "./api";
import type { ConnectionState } from "./sections/header";

export interface LiveHandlers {
  snapshot(snapshot: Snapshot): void;
  state(state: ConnectionState): void;
  /** A snapshot event that could not be parsed. */
  invalid(message: string): void;
}

const MAX_BACKOFF_MS = 30_000;

export function connectLive(url: string, on: LiveHandlers): void {
  let source: EventSource | undefined;
  let backoffMs = 1000;
  let retry: ReturnType<typeof setTimeout> | undefined;

  function open(): void {
    clearTimeout(retry);
    retry = undefined;
    source?.close();
    const es = new EventSource(url);
    source = es;
    es.addEventListener("open", () => {
      backoffMs = 1000;
      on.state("live");
    });
    es.addEventListener("snapshot", (event: MessageEvent<string>) => {
      try {
        on.snapshot(toSnapshot(JSON.parse(event.data)));
      } catch (e) {
        on.invalid(e instanceof Error ? e.message : String(e));
      }
    });
    es.addEventListener("error", () => {
      if (es !== source) return;
      if (es.readyState === EventSource.CLOSED || !navigator.onLine) {
        es.close();
        on.state("offline");
        retry = setTimeout(open, backoffMs);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      } else {
        on.state("reconnecting");
      }
    });
  }

  window.addEventListener("offline", () => on.state("offline"));
  window.addEventListener("online", () => {
    if (source?.readyState !== EventSource.OPEN) open();
  });
  open();
}
