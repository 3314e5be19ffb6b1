/** A Chart.js chart on a canvas; the config is applied again when `version` changes. */
import type { JSX } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  DoughnutController,
  Filler,
  Legend,
  LineController,
  LineElement,
  LinearScale,
  PointElement,
  Tooltip,
  type ChartConfiguration,
} from 'chart.js';

Chart.register(BarController, BarElement, LineController, LineElement, PointElement, DoughnutController, ArcElement, CategoryScale, LinearScale, Filler, Legend, Tooltip);
Chart.defaults.animation = false;
Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", sans-serif';

/**
 * What the chart drew on its axes, for tests and tools (a canvas has no text to read):
 * `canvas.dataset.axes` = `{ [axis]: { title, ticks } }`.
 */
function describeAxes(chart: Chart): void {
  const axes: Record<string, { title: string; ticks: string[] }> = {};
  for (const [id, scale] of Object.entries(chart.scales)) {
    if (scale.axis === 'r') continue;
    const title = (scale.options as { title?: { display?: boolean; text?: string | string[] } }).title;
    const text = title?.display === true ? ([] as string[]).concat(title.text ?? []).join(' ') : '';
    axes[id] = { title: text, ticks: scale.getTicks().map((t) => (Array.isArray(t.label) ? t.label.join(' ') : String(t.label ?? ''))) };
  }
  chart.canvas.dataset.axes = JSON.stringify(axes);
}

/** Chart.js plugin: {@link describeAxes} after every layout. */
const axesPlugin = { id: 'flowcastAxes', afterUpdate: describeAxes, afterLayout: describeAxes };

export function ChartCanvas({ config, label, height = 220 }: { config: ChartConfiguration; label: string; height?: number }): JSX.Element {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (canvas.current === null) return;
    chart.current = new Chart(canvas.current, { ...config, options: { responsive: true, maintainAspectRatio: false, ...config.options }, plugins: [axesPlugin] });
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, [config.type]);
  useEffect(() => {
    const c = chart.current;
    if (c === null) return;
    c.data = config.data;
    c.update('none');
  }, [config]);
  return (
    <div class="chart" style={{ height: `${height}px` }}>
      <canvas ref={canvas} role="img" aria-label={label} />
    </div>
  );
}
