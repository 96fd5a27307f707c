// Chart.js setup: each chart is created once and then only its data changes
// (`update('none')`, no animation), so live updates never rebuild a canvas.

import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  DoughnutController,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
  type TooltipItem,
} from "chart.js";
import { formatCount, formatShare } from "./format";

Chart.register(
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  DoughnutController,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
);

Chart.defaults.animation = false;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily || "system-ui, sans-serif";
Chart.defaults.color = "#3d4451";

/** Colour of each ingest path, the same in every chart and legend. */
export const PATH_COLORS: Record<string, string> = {
  grpc: "#2563eb",
  redis: "#dc2626",
  http: "#7c3aed",
};

// Tableau-10-like palette; colour-blind friendlier than random hues.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/** Gives each label (state, revision) one colour for the page's lifetime, so slices keep their colour when ranks change. */
export class ColorKeeper {
  private readonly colors = new Map<string, string>();

  get(label: string): string {
    let color = this.colors.get(label);
    if (color === undefined) {
      color = PALETTE[this.colors.size % PALETTE.length] ?? "#888";
      this.colors.set(label, color);
    }
    return color;
  }
}

const count = (value: unknown): string => formatCount(typeof value === "number" ? value : 0);

export type LineChart = Chart<"line", number[], string>;
export type BarChart = Chart<"bar", number[], string>;
export type DoughnutChart = Chart<"doughnut", number[], string>;

/** Line chart of cases per second, one dataset per path. */
export function createRateChart(canvas: HTMLCanvasElement, paths: { key: string; label: string }[]): LineChart {
  const config: ChartConfiguration<"line", number[], string> = {
    type: "line",
    data: {
      labels: [],
      datasets: paths.map(({ key, label }) => ({
        label,
        data: [],
        borderColor: PATH_COLORS[key] ?? "#888",
        backgroundColor: `${PATH_COLORS[key] ?? "#888888"}22`,
        fill: true,
        borderWidth: 2,
        pointRadius: 0,
        cubicInterpolationMode: "monotone",
      })),
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { ticks: { maxTicksLimit: 7, maxRotation: 0, autoSkipPadding: 16 }, grid: { display: false } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "cases/s" } },
      },
      plugins: {
        legend: {
          position: "bottom",
          // A dataset hidden by the page (not by a legend click) has no traffic: leave it out.
          labels: { boxWidth: 12, filter: (item, data) => data.datasets[item.datasetIndex ?? -1]?.hidden !== true },
        },
        tooltip: { callbacks: { label: (item: TooltipItem<"line">) => `${item.dataset.label}: ${count(item.raw)}/s` } },
      },
    },
  };
  return new Chart(canvas, config);
}

/** Bar chart with one dataset (age ranges). */
export function createBarChart(canvas: HTMLCanvasElement, label: string, color: string): BarChart {
  return new Chart(canvas, {
    type: "bar",
    data: { labels: [], datasets: [{ label, data: [], backgroundColor: color, borderRadius: 3 }] },
    options: {
      scales: {
        // Every bucket keeps its label; narrow screens tilt them instead of skipping.
        x: { grid: { display: false }, ticks: { maxRotation: 60, autoSkip: false, font: { size: 11 } } },
        y: { beginAtZero: true, ticks: { precision: 0 } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item: TooltipItem<"bar">) => `${count(item.raw)} cases` } },
      },
    },
  });
}

/** Doughnut whose tooltips show count and share of the whole. */
export function createDoughnutChart(canvas: HTMLCanvasElement, { legend = true } = {}): DoughnutChart {
  return new Chart(canvas, {
    type: "doughnut",
    data: { labels: [], datasets: [{ data: [], backgroundColor: [], borderWidth: 1 }] },
    options: {
      cutout: "55%",
      plugins: {
        legend: { display: legend, position: "right", labels: { boxWidth: 12 } },
        tooltip: {
          callbacks: {
            label: (item: TooltipItem<"doughnut">) => {
              const total = item.dataset.data.reduce((a, b) => a + b, 0);
              return `${item.label}: ${count(item.raw)} (${formatShare(item.parsed, total)})`;
            },
          },
        },
      },
    },
  });
}

/** Replaces labels and values of a single-dataset chart in place. */
export function setSeries(
  chart: BarChart | DoughnutChart,
  labels: string[],
  values: number[],
  colors?: string[],
): void {
  chart.data.labels = labels;
  const dataset = chart.data.datasets[0];
  if (dataset) {
    dataset.data = values;
    if (colors) dataset.backgroundColor = colors;
  }
  chart.update("none");
}
