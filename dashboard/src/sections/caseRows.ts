// Table rows for stored cases, shared by "Last 5 cases" and the stored collection.

import type { StoredCase } from "../api";
import { el, labelled } from "../dom";
import { formatCount, setTime } from "../format";

export type Column = "name" | "location" | "age" | "infectedtype" | "state" | "path" | "revision" | "when";

const PATH_LABELS: Record<string, string> = { grpc: "gRPC", redis: "Redis", http: "HTTP" };

/** Column headings; also shown beside each value when a phone stacks the row (CSS `attr(data-label)`). */
export const COLUMN_LABELS: Record<Column, string> = {
  name: "Name",
  location: "Location",
  age: "Age",
  infectedtype: "Type",
  state: "State",
  path: "Path",
  revision: "Revision",
  when: "Stored",
};

/** One <tr data-testid="{prefix}-row"> with a cell per column; cells get data-testid "{prefix}-{column}". */
export function caseRow(c: StoredCase, prefix: string, columns: Column[]): HTMLTableRowElement {
  const row = el("tr", { testid: `${prefix}-row` });
  for (const column of columns) {
    const testid = `${prefix}-${column}`;
    switch (column) {
      case "age":
        row.append(el("td", { className: "num", testid, text: formatCount(c.age) }));
        break;
      case "path": {
        const badge = el("span", { className: `badge path-${c.path}`, text: PATH_LABELS[c.path] ?? c.path });
        row.append(el("td", { testid }, badge));
        break;
      }
      case "revision":
        row.append(el("td", { className: "mono", testid, text: c.revision ?? "–" }));
        break;
      case "when": {
        const time = el("time");
        setTime(time, c.stored_ms);
        row.append(el("td", { className: "when", testid }, time));
        break;
      }
      default:
        row.append(el("td", { testid, text: c[column] }));
    }
  }
  row.querySelectorAll("td").forEach((cell, i) => {
    const column = columns[i];
    if (column) labelled(COLUMN_LABELS[column], cell);
  });
  return row;
}
