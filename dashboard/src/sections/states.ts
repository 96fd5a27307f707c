// Cases per state (active, recovered, ...): doughnut plus a visually hidden
// table with the same numbers for screen readers and tests.

import type { StateCount } from "../api";
import { ColorKeeper, createDoughnutChart, setSeries } from "../charts";
import { byTestId, el, emptyRow, tableBody } from "../dom";
import { formatCount, formatShare } from "../format";

export function createStatesSection() {
  const chart = createDoughnutChart(byTestId<HTMLCanvasElement>("states-chart"));
  const rows = tableBody("states-table");
  const colors = new ColorKeeper();
  const empty = byTestId("states-empty");

  return {
    update(states: StateCount[]): void {
      const sorted = [...states].sort((a, b) => b.cases - a.cases || a.state.localeCompare(b.state));
      const total = sorted.reduce((sum, s) => sum + s.cases, 0);
      setSeries(
        chart,
        sorted.map((s) => s.state),
        sorted.map((s) => s.cases),
        sorted.map((s) => colors.get(s.state)),
      );
      rows.replaceChildren(
        ...sorted.map((s) =>
          el(
            "tr",
            { testid: "state-row" },
            el("th", { scope: "row", testid: "state-name", text: s.state }),
            el("td", { testid: "state-cases", text: formatCount(s.cases) }),
            el("td", { text: formatShare(s.cases, total) }),
          ),
        ),
      );
      empty.hidden = sorted.length > 0;
      if (sorted.length === 0) rows.append(emptyRow(3, "No cases yet"));
    },
  };
}
