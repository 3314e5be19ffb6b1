/**
 * The dashboard's pure parts, without a browser: the DAG layout, the throughput series
 * and the failure-reason groups of the metrics page.
 */
import { describe, expect, it } from 'vitest';
import { layout, NODE_H, NODE_W } from '../dashboard/src/dag-layout.js';
import { throughputSeries } from '../dashboard/src/series.js';
import { groupFailureReasons, normaliseReason } from '../dashboard/src/failure-groups.js';
import type { PipelineStatus } from '../src/tracking/models.js';

describe('layout()', () => {
  const etl = {
    nodes: ['extract_users', 'extract_orders', 'join', 'report', 'audit'],
    edges: [
      ['extract_users', 'join'],
      ['extract_orders', 'join'],
      ['join', 'report'],
    ] as [string, string][],
  };

  it('puts each node one column right of its deepest dependency, so every edge goes left to right', () => {
    const { nodes, width, height } = layout(etl);
    const at = new Map(nodes.map((n) => [n.id, n]));
    const col = (id: string): number => Math.round(((at.get(id)?.x ?? -1) - 32) / (NODE_W + 64));
    expect(['extract_users', 'extract_orders', 'audit', 'join', 'report'].map(col)).toEqual([0, 0, 0, 1, 2]);
    for (const [from, to] of etl.edges) expect((at.get(from)?.x ?? 0) + NODE_W).toBeLessThan(at.get(to)?.x ?? 0);
    expect(width).toBe(3 * (NODE_W + 64));
    for (const n of nodes) {
      expect(n.x + NODE_W).toBeLessThanOrEqual(width);
      expect(n.y + NODE_H).toBeLessThanOrEqual(height);
    }
  });

  it('never overlaps two nodes and keeps every node once', () => {
    const wide = { nodes: ['a', 'b', 'c', 'd', 'e', 'f'], edges: [['a', 'f'], ['b', 'f'], ['c', 'f'], ['d', 'f'], ['e', 'f']] as [string, string][] };
    const { nodes } = layout(wide);
    expect(nodes.map((n) => n.id).sort()).toEqual(wide.nodes);
    for (const a of nodes) {
      for (const b of nodes) {
        if (a === b) continue;
        const apart = a.x + NODE_W <= b.x || b.x + NODE_W <= a.x || a.y + NODE_H <= b.y || b.y + NODE_H <= a.y;
        expect(apart, `${a.id} and ${b.id}`).toBe(true);
      }
    }
  });

  it('orders a column by the rows of the parents, so edges do not cross', () => {
    // x feeds q, y feeds p: p should sit level with y, q with x, so p and q swap from their declared order.
    const { nodes } = layout({ nodes: ['x', 'y', 'p', 'q'], edges: [['y', 'p'], ['x', 'q']] });
    const y = (id: string): number => nodes.find((n) => n.id === id)?.y ?? -1;
    expect(y('q')).toBe(y('x'));
    expect(y('p')).toBe(y('y'));
  });

  it('survives a cycle (a plan never has one) without looping', () => {
    expect(layout({ nodes: ['a', 'b'], edges: [['a', 'b'], ['b', 'a']] }).nodes).toHaveLength(2);
  });
});

describe('throughputSeries()', () => {
  const ended = (status: 'COMPLETED' | 'FAILED' | 'CANCELLED', completedAt: number): PipelineStatus =>
    ({ status, completed_at: new Date(completedAt).toISOString() }) as PipelineStatus;
  const now = Date.UTC(2026, 0, 1, 12, 0, 30);

  it('counts ended runs per minute by status over the last hour', () => {
    const runs = [ended('COMPLETED', now - 30 * 60_000), ended('COMPLETED', now - 30 * 60_000 + 5_000), ended('FAILED', now - 10_000), ended('CANCELLED', now - 1_000)];
    const { series, bucketMs, labels } = throughputSeries([...runs, { status: 'RUNNING', completed_at: null } as PipelineStatus], now);
    expect(bucketMs).toBe(60_000);
    expect(labels).toHaveLength(31);
    expect(series.COMPLETED[0]).toBe(2);
    expect(series.FAILED.at(-1)).toBe(1);
    expect(series.CANCELLED.at(-1)).toBe(1);
    expect(series.COMPLETED.reduce((a, b) => a + b, 0)).toBe(2);
  });

  it('widens the bucket so that a long span stays within 60 bars', () => {
    const { bucketMs, labels } = throughputSeries([ended('COMPLETED', now - 3 * 86_400_000)], now);
    expect(bucketMs).toBe(6 * 3_600_000);
    expect(labels.length).toBeLessThanOrEqual(61);
    expect(throughputSeries([], now).labels).toHaveLength(1);
  });
});

describe('groupFailureReasons()', () => {
  it('masks ids, UUIDs, numbers and quoted values, so messages that differ only by them are one reason', () => {
    expect(normaliseReason('Timeout after 120ms on job 3f2a9c1d-7b1e-4c55-9d0f-2a6b8e1c4d3a')).toBe('Timeout after <n>ms on job <id>');
    expect(normaliseReason('user "alice" not found (id deadbeef42, attempt 3)')).toBe('user "…" not found (id <id>, attempt <n>)');
    expect(normaliseReason("ECONNREFUSED 127.0.0.1:6379 for key 'a:b'")).toBe("ECONNREFUSED <n>:<n> for key '…'");
    expect(normaliseReason('order ord_8x7y6z5w failed at step2')).toBe('order <id> failed at step2');
    expect(normaliseReason('HTTP2 stream closed')).toBe('HTTP2 stream closed');
    expect(normaliseReason("can't open the user's file 'a.txt'")).toBe("can't open the user's file '…'");
    expect(normaliseReason("Pipeline failed at step 'fetch_2': Error: user 'bob' has 3 jobs")).toBe("Pipeline failed at step 'fetch_2': Error: user '…' has <n> jobs");
  });

  it('sums the counts per group, largest first, and keeps every raw message as an example', () => {
    const groups = groupFailureReasons({
      'Timeout after 120ms on job 3f2a9c1d-7b1e-4c55-9d0f-2a6b8e1c4d3a': 2,
      'Timeout after 95ms on job 77b0e2aa-0000-4c55-9d0f-2a6b8e1c4d3a': 1,
      'Timeout after 3000ms on job 11111111-2222-4333-8444-555555555555': 4,
      'user "bob" not found': 1,
      'user "carol" not found': 1,
      'disk full': 5,
    });
    expect(groups.map((g) => [g.reason, g.count])).toEqual([
      ['Timeout after <n>ms on job <id>', 7],
      ['disk full', 5],
      ['user "…" not found', 2],
    ]);
    expect(groups[0]?.examples.map((e) => e.count)).toEqual([4, 2, 1]);
    expect(groups[2]?.examples.map((e) => e.message)).toEqual(['user "bob" not found', 'user "carol" not found']);
  });
});
