/** Charts drawn by uPlot (canvas); each is a <figure> whose caption says what it shows. */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4b5563"];

export interface Series {
  label: string;
  points: [number, number | null][];
}

function useUplot(
  build: (width: number) => { options: uPlot.Options; data: uPlot.AlignedData },
  deps: unknown[],
) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const { options, data } = build(Math.max(280, el.clientWidth));
    const plot = new uPlot(options, data, el);
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(280, el.clientWidth), height: options.height }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, deps);
  return host;
}

/** Lines over a shared x axis (epochs): one per series, gaps where a series has no point. */
export function LineChart({ title, xLabel, series }: { title: string; xLabel: string; series: Series[] }) {
  const key = JSON.stringify(series);
  const host = useUplot(
    (width) => {
      const xs = [...new Set(series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
      const columns = series.map((s) => {
        const byX = new Map(s.points);
        return xs.map((x) => byX.get(x) ?? null);
      });
      return {
        options: {
          width,
          height: 220,
          legend: { live: false },
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: false } },
          // Epochs are whole numbers: no 1.5 between 1 and 2.
          axes: [{ label: xLabel, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] }, {}],
          series: [
            { label: xLabel },
            ...series.map((s, i) => ({
              label: s.label,
              stroke: PALETTE[i % PALETTE.length],
              width: 2,
              points: { show: xs.length < 30 },
              spanGaps: true,
            })),
          ],
        },
        data: [xs, ...columns] as uPlot.AlignedData,
      };
    },
    [key, xLabel],
  );
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={host} />
    </figure>
  );
}

/** Bars, one per category (a class histogram, per-class evidence). */
export function BarChart({
  title,
  labels,
  values,
  valueLabel,
}: {
  title: string;
  labels: string[];
  values: number[];
  valueLabel: string;
}) {
  const key = JSON.stringify([labels, values]);
  const host = useUplot(
    (width) => ({
      options: {
        width,
        height: 200,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        // Bars start at zero: a cut axis would exaggerate differences.
        scales: {
          x: { time: false, range: [-0.6, labels.length - 0.4] },
          y: { range: (_u: uPlot, _min: number, max: number) => [0, max > 0 ? max * 1.1 : 1] },
        },
        axes: [
          {
            values: (_u: uPlot, ticks: number[]) => ticks.map((t) => labels[t] ?? ""),
            splits: () => labels.map((_, i) => i),
          },
          { label: valueLabel },
        ],
        series: [
          {},
          {
            label: valueLabel,
            fill: `${PALETTE[0]}cc`,
            stroke: PALETTE[0],
            paths: uPlot.paths.bars?.({ size: [0.7, 60] }),
            points: { show: false },
          },
        ],
      },
      data: [labels.map((_, i) => i), values] as uPlot.AlignedData,
    }),
    [key, valueLabel],
  );
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={host} />
    </figure>
  );
}
