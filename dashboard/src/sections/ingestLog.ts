// The last 10 ingest requests (accepted, refused, unavailable) from /api/ingest-log.

import { api, ApiError } from "../api";
import { byTestId, el, emptyRow, labelled, showError, tableBody } from "../dom";
import { formatCount, setTime } from "../format";
import { throttled } from "../throttle";

const ENTRIES = 10;
const PATH_LABELS: Record<string, string> = { grpc: "gRPC", redis: "Redis", http: "HTTP" };

export function createIngestLogSection() {
  const rows = tableBody("ingest-log");
  const error = byTestId("ingest-log-error");

  async function load(): Promise<void> {
    try {
      const entries = await api.ingestLog(ENTRIES);
      rows.replaceChildren(
        ...entries.slice(0, ENTRIES).map((entry) => {
          const time = el("time");
          setTime(time, entry.time_ms);
          return el(
            "tr",
            { testid: "ingest-row" },
            labelled("When", el("td", { className: "when" }, time)),
            labelled("Path", el("td", {}, el("span", { className: `badge path-${entry.path}`, text: PATH_LABELS[entry.path] ?? entry.path }))),
            labelled("Result", el("td", {}, el("span", { className: `result result-${entry.result}`, text: entry.result }))),
            labelled("Cases", el("td", { className: "num", text: formatCount(entry.cases) })),
            labelled("Bytes", el("td", { className: "num", text: formatCount(entry.bytes) })),
            labelled("Reason", el("td", { className: "reason", text: entry.reason ?? "" })),
          );
        }),
      );
      if (entries.length === 0) rows.append(emptyRow(6, "No requests yet"));
      showError(error, null);
    } catch (e) {
      showError(error, `Could not load the ingest log: ${e instanceof ApiError ? e.message : String(e)}`);
    }
  }

  return { refresh: throttled(load, 2000) };
}
