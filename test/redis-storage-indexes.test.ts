/**
 * RedisPipelineStorage on a single Redis writes a run's index entries inside the script
 * that stores its record: a run's start and its end are one script call each, with no
 * separate ZADD / ZREM / SADD, and no moment where the record is written and its index
 * entries are not. The commands are watched with MONITOR (which tells a command sent by a
 * client from one run by a script: source `lua`). Redis Cluster keeps the separate index
 * commands: test/redis-storage-cluster.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { FlowcastEvent } from '../src/events/types.js';
import { trackEndedIndexKey, trackPendingKey, trackPipelineIndexKey, trackPipelinesKey, trackStartedIndexKey, trackStatusIndexKey } from '../src/redis/keys.js';
import { LuaScript } from '../src/redis/lua.js';
import { RedisPipelineStorage } from '../src/redis/storage.js';
import * as lua from '../src/redis/storage-lua.js';
import { PIPELINE_STATUSES, type PipelineStatus } from '../src/tracking/models.js';
import { RunEvents, reduce } from './helpers/events.js';
import { useRedisServer } from './helpers/redis.js';

const redis = useRedisServer();

/** One command the server ran: its name, first key, and whether a script ran it. */
interface Seen {
  name: string;
  key: string;
  lua: boolean;
}

/** What the commands of one write were: those the client sent, and the index writes (by anyone). */
interface Spent {
  /** Commands sent by clients (not by scripts), lower case. */
  sent: string[];
  /** Index writes (`zadd <key>`, `zrem <key>`, `sadd <key>`), with `lua:` in front when a script ran them. */
  indexWrites: string[];
}

/**
 * Watches the server with MONITOR. `take()` resolves with the commands of the prefix run
 * since the last `take()`, once every command sent before it was seen (a marker ECHO is
 * ran after them, and MONITOR shows commands in the order the server ran them).
 */
async function watch(prefix: string): Promise<{ take: () => Promise<Spent>; stop: () => void }> {
  const monitor = await redis.connect().monitor();
  const marker = redis.connect();
  const seen: Seen[] = [];
  const marks = new Map<string, () => void>();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const name = String(args[0]).toLowerCase();
    const mark = name === 'echo' ? marks.get(String(args[1])) : undefined;
    if (mark !== undefined) mark();
    else if (args.some((a) => a.startsWith(prefix))) seen.push({ name, key: String(args[1]), lua: source === 'lua' });
  });
  return {
    async take() {
      const id = randomUUID();
      const reached = new Promise<void>((resolve) => marks.set(id, resolve));
      await marker.echo(id);
      await reached;
      const all = seen.splice(0);
      const short = (k: string): string => k.slice(prefix.length);
      return {
        sent: all.filter((c) => !c.lua).map((c) => c.name),
        indexWrites: all.filter((c) => /^(zadd|zrem|sadd)$/.test(c.name)).map((c) => `${c.lua ? 'lua:' : ''}${c.name} ${short(c.key)}`),
      };
    },
    stop: () => monitor.disconnect(),
  };
}

/** A run of one pipeline: start, two steps, end (completed unless told). */
function smallRun(pipelineId: string, fail = false): RunEvents {
  const run = new RunEvents({ pipelineId, steps: ['a', 'b'] });
  run.start();
  run.stepStart('a');
  run.advance(10);
  run.stepLog('a', ['working']);
  run.stepComplete('a', 1);
  run.stepStart('b');
  run.advance(10);
  if (fail) run.fail('b broke', 'b');
  else {
    run.stepComplete('b', 2);
    run.complete('done');
  }
  return run;
}

/** The index writes of a run's start, event by event or as a group (they are the same entries). */
const START = ['lua:zadd track:idx:started', 'lua:zadd track:idx:pipeline:p', 'lua:zadd track:idx:status:RUNNING', 'lua:sadd track:idx:pipelines'];
/** The index writes of a run's completion: leaves RUNNING, then the same entries as the start, then the end-time index. */
const END = [
  'lua:zrem track:idx:status:RUNNING',
  'lua:zadd track:idx:started',
  'lua:zadd track:idx:pipeline:p',
  'lua:zadd track:idx:status:COMPLETED',
  'lua:sadd track:idx:pipelines',
  'lua:zadd track:idx:ended',
];

/** Loads every script of the storage (SCRIPT LOAD), so that the writes watched are EVALSHA calls that find their script (no NOSCRIPT, no EVAL). */
async function warmUp(): Promise<void> {
  const client = redis.connect();
  for (const script of Object.values(lua)) if (script instanceof LuaScript) await client.script('LOAD', script.source);
}

/** The run ids in every list an index answers: all runs, the pipeline's, each status's, and the ended ones. */
async function listed(storage: RedisPipelineStorage, pipelineId: string): Promise<Record<string, string[]>> {
  const ids = (rows: PipelineStatus[]): string[] => rows.map((s) => s.run_id).sort();
  const out: Record<string, string[]> = { all: ids(await storage.listPipelines()), pipeline: ids(await storage.listPipelines({ pipelineId })) };
  for (const s of PIPELINE_STATUSES) out[s] = ids(await storage.listPipelines({ status: s }));
  return out;
}

describe('RedisPipelineStorage indexes on a single Redis', () => {
  it("writes a run's index entries in the script that stores its start and its end: one command each, event by event", async () => {
    const prefix = redis.prefix();
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    await warmUp();
    const watcher = await watch(prefix);
    const run = smallRun('p');
    const e = run.events;
    const spent: Spent[] = [];
    for (const event of e) {
      await storage.applyEvent(event);
      spent.push(await watcher.take());
    }
    watcher.stop();
    // Every event, start and end included: one script call, nothing after it.
    for (const s of spent) expect(s.sent).toEqual(['evalsha']);
    expect(spent[0]!.indexWrites).toEqual(START);
    // The events between change no indexed field: no index write at all.
    for (const s of spent.slice(1, -1)) expect(s.indexWrites).toEqual([]);
    expect(spent.at(-1)!.indexWrites).toEqual(END);
    expect(await listed(storage, 'p')).toEqual({ all: [run.runId], pipeline: [run.runId], PENDING: [], RUNNING: [], COMPLETED: [run.runId], FAILED: [], CANCELLED: [] });
    expect(await redis.connect().zscore(trackEndedIndexKey(prefix), run.runId)).toBe(String(Date.parse(reduce(e)!.completed_at!)));
  });

  it('does the same for groups of events (applyEvents): the start group and the end group are one command each', async () => {
    const prefix = redis.prefix();
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    await warmUp();
    const watcher = await watch(prefix);
    const run = smallRun('p', true);
    const e = run.events;
    await storage.applyEvents(e.slice(0, 2));
    const start = await watcher.take();
    await storage.applyEvents(e.slice(2, 5));
    const middle = await watcher.take();
    expect(await storage.applyEvents(e.slice(5))).toEqual(reduce(e));
    const end = await watcher.take();
    watcher.stop();
    expect(start).toEqual({ sent: ['evalsha'], indexWrites: START });
    expect(middle).toEqual({ sent: ['evalsha'], indexWrites: [] });
    expect(end.sent).toEqual(['evalsha']);
    expect(end.indexWrites).toEqual(END.map((w) => w.replace('COMPLETED', 'FAILED')));
    expect(await listed(storage, 'p')).toEqual({ all: [run.runId], pipeline: [run.runId], PENDING: [], RUNNING: [], COMPLETED: [], FAILED: [run.runId], CANCELLED: [] });
  });

  it('writes them in the compare-and-set commit when another process wrote since, and never from a refused write', async () => {
    const prefix = redis.prefix();
    const [a, b] = [0, 1].map(() => new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix }));
    await warmUp();
    const run = smallRun('p');
    const e = run.events;
    await a!.applyEvents(e.slice(0, 3));
    // b records seqs 4-5 (a redelivery, say) while a still holds its status at seq 3.
    await b!.applyEvents(e.slice(3, 5));
    const watcher = await watch(prefix);
    // a's group ends the run: its fast-path call is refused (the record moved), then offer and commit.
    expect(await a!.applyEvents(e.slice(3))).toEqual(reduce(e));
    const end = await watcher.take();
    watcher.stop();
    expect(end.sent).toEqual(['evalsha', 'evalsha', 'evalsha']);
    // The index writes once, all by the commit: the refused call carried them too and applied none.
    expect(end.indexWrites).toEqual(END);
    // The commit took the applied events out of the pending hash (the block's ARGV are not seqs).
    expect(await redis.connect().exists(trackPendingKey(prefix, run.runId))).toBe(0);
    expect(await listed(b!, 'p')).toEqual({ all: [run.runId], pipeline: [run.runId], PENDING: [], RUNNING: [], COMPLETED: [run.runId], FAILED: [], CANCELLED: [] });
  });

  it('saveStatus is one command too, rewrites every entry (repairing one a reader removed) and leaves the indexes the run left', async () => {
    const prefix = redis.prefix();
    const client = redis.connect();
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    await warmUp();
    const run = smallRun('p');
    const e = run.events;
    const running = reduce(e.slice(0, 3))!;
    const done = reduce(e)!;
    const watcher = await watch(prefix);
    await storage.saveStatus(running);
    const first = await watcher.take();
    // An entry lost (say, a reader removed it at the wrong moment): saving again puts it back.
    await client.zrem(trackStatusIndexKey(prefix, 'RUNNING'), run.runId);
    await watcher.take();
    await storage.saveStatus(running);
    const repair = await watcher.take();
    await storage.saveStatus(done);
    const end = await watcher.take();
    // A restart: the run leaves COMPLETED and the end-time index.
    await storage.saveStatus(running);
    const restart = await watcher.take();
    watcher.stop();
    for (const s of [first, repair, end, restart]) expect(s.sent).toEqual(['evalsha']);
    expect(first.indexWrites).toEqual(expect.arrayContaining(START));
    expect(repair.indexWrites).toEqual(expect.arrayContaining(START));
    expect(end.indexWrites).toEqual(expect.arrayContaining(END));
    expect(await listed(storage, 'p')).toEqual({ all: [run.runId], pipeline: [run.runId], PENDING: [], RUNNING: [run.runId], COMPLETED: [], FAILED: [], CANCELLED: [] });
    expect(await client.zscore(trackEndedIndexKey(prefix), run.runId)).toBeNull();
    for (const s of PIPELINE_STATUSES.filter((x) => x !== 'RUNNING')) expect(await client.zscore(trackStatusIndexKey(prefix, s), run.runId)).toBeNull();
  });

  it('saveStatus moving a run to another pipeline takes it out of the old pipeline index with one more command', async () => {
    const prefix = redis.prefix();
    const client = redis.connect();
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    await warmUp();
    const status = reduce(smallRun('p').events)!;
    await storage.saveStatus(status);
    const watcher = await watch(prefix);
    await storage.saveStatus({ ...status, pipeline_id: 'q' });
    const moved = await watcher.take();
    watcher.stop();
    expect(moved.sent).toEqual(['evalsha', 'zrem']);
    expect(await client.zscore(trackPipelineIndexKey(prefix, 'p'), status.run_id)).toBeNull();
    expect(await client.zscore(trackPipelineIndexKey(prefix, 'q'), status.run_id)).not.toBeNull();
    expect((await storage.listPipelines({ pipelineId: 'q' })).map((s) => s.run_id)).toEqual([status.run_id]);
  });

  it('leaves no run out of the lists at any point: after every single script call, the run is in every index it belongs to', async () => {
    const prefix = redis.prefix();
    const client = redis.connect();
    const storage = new RedisPipelineStorage(redis.connect(), { keyPrefix: prefix });
    await warmUp();
    const watcher = await watch(prefix);
    const run = smallRun('p');
    const e = run.events;
    // Each write is one command that answers once its index entries are written: a writer that
    // died right after it (before any other command) leaves the indexes as they are checked here.
    for (let i = 0; i < e.length; i++) {
      await storage.applyEvent(e[i] as FlowcastEvent);
      expect((await watcher.take()).sent).toEqual(['evalsha']);
      const status = reduce(e.slice(0, i + 1))!;
      const started = String(Date.parse(status.started_at!));
      expect(await client.zscore(trackStartedIndexKey(prefix), run.runId)).toBe(started);
      expect(await client.zscore(trackPipelineIndexKey(prefix, 'p'), run.runId)).toBe(started);
      expect(await client.zscore(trackStatusIndexKey(prefix, status.status), run.runId)).toBe(started);
      expect(await client.sismember(trackPipelinesKey(prefix), 'p')).toBe(1);
      // The checks' own commands, out of the next count.
      await watcher.take();
    }
    watcher.stop();
  });
});
