/** The graph of a dataflow run, drawn in SVG (layout: ../dag-layout.ts), each node with its state in words. */
import type { JSX } from 'preact';
import type { DagDescriptor } from '../../../src/events/types.js';
import { layout, NODE_H as H, NODE_W as W } from '../dag-layout.js';
import type { StepStatus } from '../../../src/tracking/models.js';
import { LABELS } from './Status.js';

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
