// Cases per serving revision (a Knative traffic split, e.g. a canary), with shares.

import type { Summary } from "../api";
import { ColorKeeper, createDoughnutChart, setSeries } from "../charts";
import { byTestId, el, emptyRow, swatch, tableBody } from "../dom";
import { formatCount, formatShare } from "../format";

export function createRevisionsSection() {
  const chart = createDoughnutChart(byTestId<HTMLCanvasElement>("revision-chart"), { legend: false });
  const rows = tableBody("revision-shares");
  const colors = new ColorKeeper();
  const empty = byTestId("revision-empty");

  return {
    update(summary: Summary): void {
      const entries = Object.entries(summary.by_revision).sort(([a], [b]) => a.localeCompare(b));
      const total = entries.reduce((sum, [, n]) => sum + n, 0);
      const recentTotal = Object.values(summary.rate.by_revision).reduce((a, b) => a + b, 0);
      setSeries(
        chart,
        entries.map(([name]) => name),
        entries.map(([, n]) => n),
        entries.map(([name]) => colors.get(name)),
      );
      rows.replaceChildren(
        ...entries.map(([name, n]) =>
          el(
            "tr",
            { testid: "revision-row" },
            el("th", { scope: "row" }, swatch(colors.get(name)), el("span", { testid: "revision-name", text: name })),
            el("td", { className: "num", testid: "revision-cases", text: formatCount(n) }),
            el("td", { className: "num", text: formatShare(n, total) }),
            el("td", { className: "num", text: formatShare(summary.rate.by_revision[name] ?? 0, recentTotal) }),
          ),
        ),
      );
      empty.hidden = entries.length > 0;
      if (entries.length === 0) rows.append(emptyRow(4, "No cases yet"));
    },
  };
}
