/**
 * The graph of a dataflow run, drawn in SVG with a layered layout: a node's layer is the
 * longest path to it from a source, and nodes in a layer are ordered by the mean position
 * of their parents (one barycentre pass), which keeps edges short and mostly uncrossed
 * for pipeline-sized graphs.
 */
import type { JSX } from 'preact';
import type { DagDescriptor } from '../../../src/events/types.js';
import type { StepStatus } from '../../../src/tracking/models.js';
import { LABELS } from './Status.js';

const W = 168;
const H = 52;
const GAP_X = 64;
const GAP_Y = 20;

interface Placed {
  id: string;
  x: number;
  y: number;
}

/** Positions of the nodes: layers left to right. Exported for tests of the layout. */
export function layout(dag: DagDescriptor): { nodes: Placed[]; width: number; height: number } {
  const parents = new Map<string, string[]>(dag.nodes.map((n) => [n, []]));
  for (const [from, to] of dag.edges) parents.get(to)?.push(from);
  const layer = new Map<string, number>();
  const depth = (n: string, seen: Set<string>): number => {
    const known = layer.get(n);
    if (known !== undefined) return known;
    if (seen.has(n)) return 0; // a cycle cannot happen in a valid plan; do not loop on one
    seen.add(n);
    const ps = parents.get(n) ?? [];
    const d = ps.length === 0 ? 0 : Math.max(...ps.map((p) => depth(p, seen) + 1));
    layer.set(n, d);
    return d;
  };
  for (const n of dag.nodes) depth(n, new Set());
  const layers: string[][] = [];
  for (const n of dag.nodes) (layers[layer.get(n) ?? 0] ??= []).push(n);
  const row = new Map<string, number>();
  layers.forEach((nodes, li) => {
    if (li > 0) {
      const score = (n: string): number => {
        const ps = parents.get(n) ?? [];
        return ps.length === 0 ? Number.MAX_SAFE_INTEGER : ps.reduce((s, p) => s + (row.get(p) ?? 0), 0) / ps.length;
      };
      nodes.sort((a, b) => score(a) - score(b));
    }
    nodes.forEach((n, i) => row.set(n, i));
  });
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = tallest * (H + GAP_Y) + GAP_Y;
  const nodes: Placed[] = [];
  layers.forEach((l, li) => {
    const offset = (height - l.length * (H + GAP_Y) + GAP_Y) / 2;
    l.forEach((n, i) => nodes.push({ id: n, x: GAP_X / 2 + li * (W + GAP_X), y: offset + i * (H + GAP_Y) }));
  });
  return { nodes, width: layers.length * (W + GAP_X), height };
}

const ICON: Record<string, string> = { PENDING: '○', RUNNING: '▶', RETRYING: '↻', COMPLETED: '✓', FAILED: '✕', SKIPPED: '↷', CANCELLED: '⊘' };

export function Dag({ dag, steps }: { dag: DagDescriptor; steps: StepStatus[] }): JSX.Element {
  const { nodes, width, height } = layout(dag);
  const at = new Map(nodes.map((n) => [n.id, n]));
  const state = new Map(steps.map((s) => [s.step_name, s.status]));
  return (
    <svg class="dag" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`Graph of ${dag.nodes.length} steps`} data-testid="dag">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="dag-arrow" />
        </marker>
      </defs>
      {dag.edges.map(([from, to]) => {
        const a = at.get(from);
        const b = at.get(to);
        if (a === undefined || b === undefined) return null;
        const x1 = a.x + W;
        const y1 = a.y + H / 2;
        const x2 = b.x;
        const y2 = b.y + H / 2;
        const mx = (x1 + x2) / 2;
        return <path key={`${from}->${to}`} class="dag-edge" d={`M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`} marker-end="url(#arrow)" />;
      })}
      {nodes.map((n) => {
        const s = state.get(n.id) ?? 'PENDING';
        return (
          <g key={n.id} class={`dag-node s-${s.toLowerCase()}`} transform={`translate(${n.x} ${n.y})`} data-node={n.id} data-status={s}>
            <title>{`${n.id}: ${LABELS[s] ?? s}`}</title>
            <rect width={W} height={H} rx={8} />
            <text x={12} y={21} class="dag-name">
              {n.id.length > 20 ? `${n.id.slice(0, 19)}…` : n.id}
            </text>
            <text x={12} y={40} class="dag-state">
              {ICON[s] ?? '•'} {LABELS[s] ?? s}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
