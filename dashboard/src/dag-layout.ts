/**
 * A layered layout for the graph of a dataflow run: a node's layer (column) is the
 * longest path to it from a source, so every edge goes left to right; nodes in a layer
 * are ordered by the mean row of their parents (one barycentre pass), which keeps edges
 * short and mostly uncrossed for pipeline-sized graphs. Pure: no DOM.
 */
import type { DagDescriptor } from '../../src/events/types.js';

export const NODE_W = 168;
export const NODE_H = 52;
const W = NODE_W;
const H = NODE_H;
const GAP_X = 64;
const GAP_Y = 20;

export interface Placed {
  id: string;
  x: number;
  y: number;
}

/** Positions of the nodes (top-left corners), layers left to right, and the size of the drawing. */
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

