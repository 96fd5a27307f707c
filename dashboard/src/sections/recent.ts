// Last 5 cases stored, newest first.

import type { StoredCase } from "../api";
import { emptyRow, tableBody } from "../dom";
import { caseRow, type Column } from "./caseRows";

const COLUMNS: Column[] = ["name", "location", "age", "state", "path", "when"];

export function createRecentSection() {
  const rows = tableBody("recent-cases");

  return {
    update(cases: StoredCase[]): void {
      rows.replaceChildren(...cases.slice(0, 5).map((c) => caseRow(c, "recent", COLUMNS)));
      if (cases.length === 0) rows.append(emptyRow(COLUMNS.length, "No cases yet"));
    },
  };
}
