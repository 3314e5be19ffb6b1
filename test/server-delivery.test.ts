/**
 * The delivery contract (issue 3 items 3 and 6, DESIGN §1-3): per run and per client, the
 * events arrive in seq order with no gap and no duplicate — for concurrent clients, for a
 * late joiner (snapshot with last_seq, then exactly the events after it), for a client
 * that reconnects with `since`, and for a browser that opens in the middle of a run that
 * writes log lines (seed 003). The reference is always the run's log as the transport
 * holds it (`broker.transport.read(runId)`).
 */
import { describe, expect, it } from 'vitest';
import type { FlowcastEvent, PipelineStatus, RunHandle } from '../src/index.js';
import { logHolds, startFixture, type Fixture } from './helpers/server-fixture.js';
import { connect, isEvent, seqs, type TestClient } from './helpers/ws-client.js';

/** Asserts `client` got every event of each run, exactly as the log holds it (from seq `from[runId] + 1`). */
async function expectExact(f: Fixture, client: TestClient, runIds: string[], from: Record<string, number> = {}): Promise<void> {
  for (const runId of runIds) {
    const log = await f.log(runId);
    const got = client.events(runId);
    const start = from[runId] ?? 0;
    expect(seqs(got), `seqs of run ${runId}`).toEqual(seqs(log).filter((s) => s > start));
    expect(got).toEqual(log.filter((e) => e.seq > start));
  }
}

describe('concurrent clients', () => {
  it('each of eight clients gets every event of every run in seq order, no gap, no duplicate, while runs interleave', async () => {
    const f = await startFixture();
    const clients: TestClient[] = [];
    const plans = [
      [{ pipeline_id: '*' }],
      [{ pipeline_id: '*' }],
      [{ pipeline_id: 'gated' }, { pipeline_id: 'alpha' }],
      [{ pipeline_id: 'alpha' }, { pipeline_id: 'gated' }],
      [{ pipeline_id: '*' }, { pipeline_id: 'gated' }],
      [{ pipeline_id: 'gated' }, { pipeline_id: 'alpha' }, { pipeline_id: '*' }],
      [{ pipeline_id: '*' }],
      [{ pipeline_id: 'alpha' }, { pipeline_id: 'gated' }],
    ];
    for (const plan of plans) {
      const c = await f.client();
      for (const sub of plan) await c.subscribe(sub);
      clients.push(c);
    }
    const gatedRuns: RunHandle<string>[] = [];
    for (let i = 0; i < 5; i++) gatedRuns.push(await f.startGated({ key: `k${i}`, phases: [40, 60] }));
    const alphaRuns = await Promise.all(Array.from({ length: 20 }, (_, i) => f.alpha.kiq(i)));
    for (let i = 0; i < 5; i++) f.open(`k${i}`, 0);
    await Promise.all([...gatedRuns, ...alphaRuns].map((r) => r.waitResult({ timeoutMs: 10_000 })));
    const runIds = [...gatedRuns, ...alphaRuns].map((r) => r.runId);
    for (const c of clients) {
      for (const runId of runIds) await c.waitForEnd(runId);
      await expectExact(f, c, runIds);
    }
    // 5 gated runs of 106 events and 20 alpha runs of 6: 650 events per client.
    expect(clients[0]?.events()).toHaveLength(5 * 106 + 20 * 6);
  });
});

describe('late join', () => {
  it('a client joining a pipeline with runs in flight gets a snapshot of each (with last_seq), then exactly the events after it', async () => {
    const f = await startFixture();
    const runs = [await f.startGated({ key: 'a', phases: [2, 5] }), await f.startGated({ key: 'b', phases: [7, 1] }), await f.startGated({ key: 'c', phases: [0, 3] })];
    const held = [4, 9, 2];
    for (let i = 0; i < runs.length; i++) await logHolds(f, (runs[i] as RunHandle<string>).runId, held[i] as number);
    const ended = await f.runToEnd(f.alpha);

    const client = await f.client();
    await client.subscribe({ pipeline_id: 'gated' });
    await client.waitUntil(() => client.controls('snapshot').length === 3, 'three snapshots');
    const from: Record<string, number> = {};
    runs.forEach((run, i) => {
      const snap = client.controls('snapshot').find((s) => s.run_id === run.runId);
      expect(snap).toMatchObject({ type: 'snapshot', pipeline_id: 'gated', run_id: run.runId, last_seq: held[i] });
      const status = snap?.status as PipelineStatus;
      expect(status).toMatchObject({ run_id: run.runId, pipeline_id: 'gated', status: 'RUNNING', last_seq: held[i], current_step: 'work' });
      expect(status.steps.map((s) => s.step_name)).toEqual(['work', 'finish']);
      from[run.runId] = held[i] as number;
    });
    for (const key of ['a', 'b', 'c']) f.open(key, 0);
    await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 10_000 })));
    for (const run of runs) {
      await client.waitForEnd(run.runId);
      // The snapshot comes before the run's first event.
      const snapAt = client.messages.findIndex((m) => m.type === 'snapshot' && m.run_id === run.runId);
      const firstAt = client.messages.findIndex((m) => isEvent(m) && m.run_id === run.runId);
      expect(snapAt).toBeLessThan(firstAt);
    }
    await expectExact(f, client, runs.map((r) => r.runId), from);
    // A run that had ended is not sent.
    expect(client.messages.filter((m) => m.run_id === ended)).toEqual([]);
  });

  it('"*" late join: snapshots of the runs in flight of every pipeline', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'a', phases: [3, 3] });
    await logHolds(f, run.runId, 5);
    const client = await f.client();
    await client.subscribe({ pipeline_id: '*' });
    const snap = await client.waitFor((m) => m.type === 'snapshot', 'snapshot');
    expect(snap).toMatchObject({ run_id: run.runId, last_seq: 5 });
    f.open('a', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await client.waitForEnd(run.runId);
    await expectExact(f, client, [run.runId], { [run.runId]: 5 });
  });

  it('a late joiner next to a client that has followed from the start: both end with the same run, each with no gap', async () => {
    const f = await startFixture();
    const early = await f.client();
    await early.subscribe({ pipeline_id: 'gated' });
    const run = await f.startGated({ key: 'a', phases: [10, 10, 10] });
    await logHolds(f, run.runId, 12);
    const late = await f.client();
    await late.subscribe({ pipeline_id: 'gated' });
    await late.waitFor((m) => m.type === 'snapshot', 'snapshot');
    f.open('a', 0);
    await logHolds(f, run.runId, 22);
    const later = await f.client();
    await later.subscribe({ pipeline_id: 'gated' });
    await later.waitFor((m) => m.type === 'snapshot', 'snapshot');
    f.open('a', 1);
    await run.waitResult({ timeoutMs: 10_000 });
    for (const c of [early, late, later]) await c.waitForEnd(run.runId);
    await expectExact(f, early, [run.runId]);
    await expectExact(f, late, [run.runId], { [run.runId]: 12 });
    await expectExact(f, later, [run.runId], { [run.runId]: 22 });
  });
});

describe('reconnect with since', () => {
  it('a client that disconnects mid-run and reconnects with { run_id, since: lastSeq } gets exactly the missed events', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'r', phases: [3, 8, 4] });
    const first = await f.client();
    await first.subscribe({ pipeline_id: 'gated' });
    await logHolds(f, run.runId, 5);
    // It joined in flight: snapshot, then nothing until the gate opens.
    await first.waitFor((m) => m.type === 'snapshot', 'snapshot');
    f.open('r', 0);
    await first.waitUntil(() => first.events(run.runId).some((e) => e.type === 'StepLogEvent' && (e.lines[0] ?? '').includes('phase 1 line 7')), 'phase 1');
    const lastSeq = Math.max(...seqs(first.events(run.runId)));
    await first.close();
    // The run goes on while nobody listens.
    f.open('r', 1);
    await run.waitResult({ timeoutMs: 10_000 });
    const second = await f.client();
    await second.subscribe({ run_id: run.runId, since: lastSeq });
    await second.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    const log = await f.log(run.runId);
    const joined: FlowcastEvent[] = [...first.events(run.runId), ...second.events(run.runId)];
    expect(seqs(joined)).toEqual(seqs(log).filter((s) => s > 5));
    expect(joined).toEqual(log.slice(5));
    expect(second.controls('replay_complete')).toEqual([{ type: 'replay_complete', run_id: run.runId, last_seq: log.length }]);
  });

  it('reconnecting while the run is still going: replay, replay_complete, then live, seamless', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'r', phases: [2, 6, 6] });
    const first = await f.client();
    await first.subscribe({ run_id: run.runId, since: 0 });
    await first.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    f.open('r', 0);
    await first.waitUntil(() => first.events(run.runId).length >= 6, 'six events');
    const lastSeq = Math.max(...seqs(first.events(run.runId)));
    await first.close();
    const second = await f.client();
    await second.subscribe({ run_id: run.runId, since: lastSeq });
    await second.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    f.open('r', 1);
    await run.waitResult({ timeoutMs: 10_000 });
    await second.waitForEnd(run.runId);
    const log = await f.log(run.runId);
    expect([...first.events(run.runId), ...second.events(run.runId)]).toEqual(log);
  });

  it('many clients reconnecting at different points of many runs each end with the whole log', async () => {
    const f = await startFixture();
    const runs: RunHandle<string>[] = [];
    for (let i = 0; i < 4; i++) runs.push(await f.startGated({ key: `m${i}`, phases: [5, 5, 5, 5] }));
    const clients: { before: TestClient; cut: Record<string, number> }[] = [];
    for (let c = 0; c < 4; c++) {
      const client = await f.client();
      for (const r of runs) await client.subscribe({ run_id: r.runId, since: 0 });
      await client.waitUntil(() => client.controls('replay_complete').length === runs.length, 'replays');
      clients.push({ before: client, cut: {} });
    }
    for (let phase = 0; phase < 2; phase++) {
      for (let i = 0; i < runs.length; i++) f.open(`m${i}`, phase);
      for (const r of runs) await logHolds(f, r.runId, 2 + 5 * (phase + 2));
      // Client `phase` leaves here.
      const leaving = clients[phase];
      if (leaving === undefined) continue;
      for (const r of runs) await leaving.before.waitUntil(() => leaving.before.events(r.runId).length === 2 + 5 * (phase + 2), 'the held events');
      for (const r of runs) leaving.cut[r.runId] = leaving.before.events(r.runId).length;
      await leaving.before.close();
    }
    for (let i = 0; i < runs.length; i++) f.open(`m${i}`, 2);
    await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 10_000 })));
    for (const { before, cut } of clients.slice(0, 2)) {
      const after = await connect(f.server.url);
      for (const r of runs) await after.subscribe({ run_id: r.runId, since: cut[r.runId] ?? 0 });
      await after.waitUntil(() => after.controls('replay_complete').length === runs.length, 'replays');
      for (const r of runs) expect([...before.events(r.runId), ...after.events(r.runId)]).toEqual(await f.log(r.runId));
      await after.close();
    }
    for (const { before } of clients.slice(2)) {
      for (const r of runs) await before.waitForEnd(r.runId);
      await expectExact(f, before, runs.map((r) => r.runId));
    }
  });
});

describe('a browser opened in the middle of a run that writes log lines (seed 003)', () => {
  it('subscribing to the run with since: 0 shows every line from the first, then the live ones', async () => {
    const f = await startFixture({ server: { allowedOrigins: ['http://localhost:3000'] } });
    const run = await f.startGated({ key: 'tail', phases: [25, 25] });
    await logHolds(f, run.runId, 27);
    const browser = await f.client({ origin: 'http://localhost:3000' });
    await browser.subscribe({ run_id: run.runId, since: 0 });
    await browser.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    f.open('tail', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await browser.waitForEnd(run.runId);
    const lines = browser.events(run.runId).flatMap((e) => (e.type === 'StepLogEvent' ? e.lines : []));
    expect(lines).toEqual([...Array.from({ length: 25 }, (_, j) => `tail phase 0 line ${j}`), ...Array.from({ length: 25 }, (_, j) => `tail phase 1 line ${j}`)]);
    await expectExact(f, browser, [run.runId]);
  });

  it('a page that subscribed to the pipeline asks for the backlog of the run its snapshot names: every line, each once', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'tail', phases: [12, 12] });
    await logHolds(f, run.runId, 14);
    const page = await f.client();
    await page.subscribe({ pipeline_id: 'gated' });
    const snap = await page.waitFor((m) => m.type === 'snapshot', 'snapshot');
    expect((snap.status as PipelineStatus).steps[0]?.log_lines).toBe(12);
    await page.subscribe({ run_id: snap.run_id, since: 0 });
    await page.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    f.open('tail', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await page.waitForEnd(run.runId);
    const lines = page.events(run.runId).flatMap((e) => (e.type === 'StepLogEvent' ? e.lines : []));
    expect(lines).toHaveLength(24);
    expect(new Set(lines).size).toBe(24);
    await expectExact(f, page, [run.runId]);
  });
});
