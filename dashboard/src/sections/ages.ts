// Cases per age range (0-9 ... 90+): bar chart plus a visually hidden table.

import type { AgeBucket } from "../api";
import { createBarChart, setSeries } from "../charts";
import { byTestId, el, tableBody } from "../dom";
import { formatCount } from "../format";

export function createAgesSection() {
  const chart = createBarChart(byTestId<HTMLCanvasElement>("ages-chart"), "Cases", "#4e79a7");
  const rows = tableBody("ages-table");

  return {
    update(buckets: AgeBucket[]): void {
      setSeries(
        chart,
        buckets.map((b) => b.range),
        buckets.map((b) => b.cases),
      );
      rows.replaceChildren(
        ...buckets.map((b) =>
          el(
            "tr",
            { testid: "age-row" },
            el("th", { scope: "row", testid: "age-range", text: b.range }),
            el("td", { testid: "age-cases", text: formatCount(b.cases) }),
          ),
        ),
      );
    },
  };
}
