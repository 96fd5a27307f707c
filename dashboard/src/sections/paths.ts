// Cases/s per ingest path (live line chart over the last 60 s) and totals per path.

import type { Summary } from "../api";
import { createRateChart, type LineChart } from "../charts";
import { byTestId, setText } from "../dom";
import { formatClock, formatCount, formatRate } from "../format";

const PATHS = [
  { key: "grpc", label: "gRPC" },
  { key: "redis", label: "Redis" },
  { key: "http", label: "HTTP" },
];
const WINDOW_S = 60;

export function createPathsSection() {
  const chart: LineChart = createRateChart(byTestId<HTMLCanvasElement>("rate-chart"), PATHS);
  const httpItem = byTestId("path-http-item");
  let series: Summary["series"] = [];
  // The window ends at the newest second the server reported, then moves on
  // with the local clock while no snapshot arrives (no server/browser clock skew).
  let lastT = Math.floor(Date.now() / 1000);
  let receivedAt = Date.now();
  let shownEnd = -1;

  function draw(): void {
    const end = lastT + Math.floor((Date.now() - receivedAt) / 1000);
    if (end === shownEnd) return;
    shownEnd = end;
    const byT = new Map(series.map((p) => [p.t, p.by_path]));
    const seconds = Array.from({ length: WINDOW_S }, (_, i) => end - WINDOW_S + 1 + i);
    chart.data.labels = seconds.map((t) => formatClock(t * 1000));
    PATHS.forEach(({ key }, i) => {
      const dataset = chart.data.datasets[i];
      if (!dataset) return;
      dataset.data = seconds.map((t) => byT.get(t)?.[key] ?? 0);
      // HTTP (the plain CloudEvent sink) only appears once it carries traffic.
      if (key === "http") dataset.hidden = !dataset.data.some((v) => v > 0);
    });
    chart.update("none");
  }

  return {
    update(summary: Summary): void {
      for (const { key } of PATHS) {
        setText(byTestId(`path-${key}`), formatCount(summary.by_path[key] ?? 0));
        setText(byTestId(`rate-${key}`), `${formatRate(summary.rate.by_path[key] ?? 0)}/s`);
      }
      httpItem.hidden = (summary.by_path.http ?? 0) === 0;
      series = summary.series;
      const newest = series.at(-1)?.t;
      lastT = newest ?? Math.floor(Date.now() / 1000);
      receivedAt = Date.now();
      shownEnd = -1;
      draw();
    },
    /** Called every second: slides the window when the server is quiet. */
    tick: draw,
  };
}
