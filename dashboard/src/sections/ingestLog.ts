// The newest 10 ingest-log records from /api/ingest-log: ingest's answers
// (accepted, refused, unavailable, outcome unknown) summed per second and kind.

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
            labelled("Path", el("td", { testid: "ingest-path" }, el("span", { className: `badge path-${entry.path}`, text: PATH_LABELS[entry.path] ?? entry.path }))),
            labelled("Result", el("td", { testid: "ingest-result" }, el("span", { className: `result result-${entry.result}`, text: entry.result }))),
            labelled("Requests", el("td", { className: "num", testid: "ingest-requests", text: formatCount(entry.requests) })),
            labelled("Cases", el("td", { className: "num", testid: "ingest-cases", text: formatCount(entry.cases) })),
            labelled("Bytes", el("td", { className: "num", text: formatCount(entry.bytes) })),
            labelled("Reason", el("td", { className: "reason", text: entry.reason ?? "" })),
          );
        }),
      );
      if (entries.length === 0) rows.append(emptyRow(7, "No requests yet"));
      showError(error, null);
    } catch (e) {
      showError(error, `Could not load the ingest log: ${e instanceof ApiError ? e.message : String(e)}`);
    }
  }

  return { refresh: throttled(load, 2000) };
}
