import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ErrorCodes } from '../src/core/errors.js';
import type { EventDraft, FlowcastEvent } from '../src/events/types.js';
import { runLogKey, runLogMetaKey } from '../src/redis/keys.js';
import { RedisPubSubTransport, type RedisPubSubTransportOptions } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { eventTransportConformance } from './conformance/event-transport.js';
import { startRedisServer, useRedisServer } from './helpers/redis.js';
import { rmSync } from 'node:fs';
import { Redis as RedisClient } from 'ioredis';
import { RedisRunState } from '../src/redis/run-state.js';
import { beginRun, newRunRecord } from '../src/pipeline/transitions.js';
import { connect, isEvent } from './helpers/ws-client.js';

const redis = useRedisServer();

eventTransportConformance('redis', (options) => new RedisPubSubTransport(redis.connect(), { keyPrefix: redis.prefix(), onListenerError: () => undefined, ...options }));

function open(options: RedisPubSubTransportOptions = {}): { client: Redis; transport: RedisPubSubTransport } {
  const client = redis.connect();
  return { client, transport: new RedisPubSubTransport(client, { keyPrefix: redis.prefix(), onError: () => undefined, ...options }) };
}

function draft(runId: string, pipelineId: string, kind: 'log' | 'end' = 'log', line = 'x'): EventDraft {
  const base = { pipeline_id: pipelineId, run_id: runId, timestamp: new Date().toISOString() };
  if (kind === 'end') return { type: 'PipelineCompleteEvent', ...base, pipeline_type: 'sequential', status: 'COMPLETED', duration_ms: 1, result: null };
  return { type: 'StepLogEvent', ...base, step_name: 's', step_index: 0, task_id: 't', attempt: 1, lines: [line] };
}

/** Appends and publishes, as the engine does; resolves once Redis ran the publish. */
async function emit(t: RedisPubSubTransport, d: EventDraft): Promise<FlowcastEvent> {
  const event = await t.append(d);
  if (event === null) throw new Error('refused');
  await t.publish(event);
  // The publish goes out at the end of this event-loop turn, before a later command of
  // the same connection.
  await new Promise((r) => setImmediate(r));
  await t.redis.ping();
  return event;
}

/** Resolves once `condition()` holds, polling; rejects after `ms` (a bound for waiting, never asserted on). */
async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function pubsubClients(client: Redis): Promise<number> {
  const list = (await client.client('LIST')) as string;
  return list.split('\n').filter((line) => /\bsub=[1-9]/.test(line)).length;
}

describe('RedisPubSubTransport', () => {
  describe('#subscribe', () => {
    it('multiplexes every local listener over one connection and exact channels, subscribing once per channel', async () => {
      const { client, transport } = open();
      const prefix = redis.prefix();
      const offs: (() => void)[] = [];
      for (let i = 0; i < 30; i++) offs.push(transport.subscribe({ runId: `run-${i % 10}` }, () => undefined));
      for (let i = 0; i < 5; i++) offs.push(transport.subscribe({ pipelineId: 'p' }, () => undefined));
      offs.push(transport.subscribe('*', () => undefined));
      expect(transport.subscribedChannels).toBe(12);
      await emit(transport, draft('run-0', 'p'));
      expect(await pubsubClients(client)).toBe(1);
      expect(Number(await client.pubsub('NUMPAT'))).toBe(0);
      const channels = ((await client.pubsub('CHANNELS', `${prefix}*`)) as string[]).sort();
      expect(channels).toEqual(
        [...Array.from({ length: 10 }, (_, i) => `${prefix}ev:run:run-${i}`), `${prefix}ev:pipeline:p`, `${prefix}ev:all`].sort(),
      );
      for (const off of offs.splice(0, 30)) off();
      await until(async () => ((await client.pubsub('CHANNELS', `${prefix}ev:run:*`)) as string[]).length === 0, 'run channels unsubscribed');
      expect(transport.subscribedChannels).toBe(2);
      for (const off of offs) off();
      await until(async () => ((await client.pubsub('CHANNELS', `${prefix}*`)) as string[]).length === 0, 'all channels unsubscribed');
    });

    it('delivers a worker\'s events to two server instances, each run in seq order', async () => {
      const worker = open().transport;
      const servers = [open().transport, open().transport];
      const seen = servers.map(() => new Map<string, number[]>());
      servers.forEach((s, i) =>
        s.subscribe('*', (e) => {
          const list = seen[i]!.get(e.run_id) ?? [];
          list.push(e.seq);
          seen[i]!.set(e.run_id, list);
        }),
      );
      // Subscriptions are confirmed before a publish of the same transport; the worker is
      // another one, so wait until Redis counts both subscribers.
      await until(async () => Number((await worker.redis.pubsub('NUMSUB', `${redis.prefix()}ev:all`))[1]) === 2, 'both servers subscribed');
      await Promise.all(
        ['r1', 'r2', 'r3'].map(async (runId) => {
          for (let i = 0; i < 40; i++) await emit(worker, draft(runId, 'p'));
          await emit(worker, draft(runId, 'p', 'end'));
        }),
      );
      const expected = Array.from({ length: 41 }, (_, i) => i + 1);
      await until(() => seen.every((m) => ['r1', 'r2', 'r3'].every((r) => m.get(r)?.length === 41)), 'every event at both servers');
      for (const m of seen) for (const r of ['r1', 'r2', 'r3']) expect(m.get(r)).toEqual(expected);
    });

    it('publishes the events of one event-loop turn together, in one command, in order', async () => {
      const { client: admin, transport: listener } = open();
      const worker = open().transport;
      const got: string[] = [];
      listener.subscribe('*', (e) => got.push(`${e.run_id}#${e.seq}`));
      await until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:all`))[1]) === 1, 'listener subscribed');
      const events: FlowcastEvent[] = [];
      for (let i = 0; i < 40; i++) events.push((await worker.append(draft(`run-b${i % 4}`, 'pb')))!);
      const scriptCalls = async (): Promise<number> => {
        const stats = await admin.info('commandstats');
        return [...stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
      };
      const before = await scriptCalls();
      for (const e of events) expect(worker.publish(e)).toBeUndefined();
      await until(() => got.length === 40, 'every event');
      // One script call for the 40 events (a second only if Redis had to load the script).
      expect((await scriptCalls()) - before - 1).toBeLessThanOrEqual(2);
      for (let r = 0; r < 4; r++) expect(got.filter((k) => k.startsWith(`run-b${r}#`))).toEqual(Array.from({ length: 10 }, (_, i) => `run-b${r}#${i + 1}`));
    });

    it('puts events that cross between publishers back in seq order, once each', async () => {
      const { client: admin, transport: listener } = open();
      const workers = [open().transport, open().transport];
      const got: number[] = [];
      const byPipeline: number[] = [];
      listener.subscribe({ runId: 'run-x' }, (e) => got.push(e.seq));
      listener.subscribe({ pipelineId: 'px' }, (e) => byPipeline.push(e.seq));
      await until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:run:run-x`))[1]) === 1, 'listener subscribed');
      const events: FlowcastEvent[] = [];
      for (let i = 0; i < 12; i++) events.push((await workers[0]!.append(draft('run-x', 'px')))!);
      events.push((await workers[1]!.append(draft('run-x', 'px', 'end')))!);
      // Published out of order, some twice, from two connections.
      const order = [0, 2, 1, 1, 5, 3, 4, 4, 6, 9, 7, 8, 12, 10, 11, 0];
      for (const [n, i] of order.entries()) await workers[n % 2]!.publish(events[i]!);
      await until(() => got.length >= 13 && byPipeline.length >= 13, 'every event');
      await new Promise((r) => setTimeout(r, 50));
      const expected = Array.from({ length: 13 }, (_, i) => i + 1);
      expect(got).toEqual(expected);
      expect(byPipeline).toEqual(expected);
    });

    it('starts a run afresh for a listener that comes back after nobody listened (no replay of what it missed)', async () => {
      const { client: admin, transport: listener } = open();
      const worker = open().transport;
      const subscribed = async () =>
        until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:run:run-back`))[1]) === 1, 'listener subscribed');
      const first: number[] = [];
      const off = listener.subscribe({ runId: 'run-back' }, (e) => first.push(e.seq));
      await subscribed();
      for (let i = 0; i < 3; i++) await emit(worker, draft('run-back', 'p'));
      await until(() => first.length === 3, 'first events');
      off();
      for (let i = 0; i < 5; i++) await emit(worker, draft('run-back', 'p'));
      const second: number[] = [];
      listener.subscribe({ runId: 'run-back' }, (e) => second.push(e.seq));
      await subscribed();
      for (let i = 0; i < 2; i++) await emit(worker, draft('run-back', 'p'));
      await until(() => second.length >= 2, 'events after coming back');
      await new Promise((r) => setTimeout(r, 50));
      expect(second).toEqual([9, 10]);
    });

    it('after its connection is killed, resubscribes and delivers what Pub/Sub lost from the log, in order and once', async () => {
      const { client: admin, transport: listener } = open();
      const worker = open().transport;
      const got: number[] = [];
      const resubscribed: string[] = [];
      listener.subscribe({ runId: 'run-k' }, (e) => got.push(e.seq));
      for (let i = 0; i < 5; i++) await emit(listener, draft('run-k', 'p'));
      await until(() => got.length === 5, 'first five events');
      const sub = listener.subscriberConnection!;
      sub.on('ready', () => resubscribed.push('ready'));
      await admin.client('KILL', 'TYPE', 'pubsub');
      // Published while the subscription is down or coming back: some of these never reach it by Pub/Sub.
      for (let i = 0; i < 10; i++) await emit(worker, draft('run-k', 'p'));
      await until(() => resubscribed.length > 0, 'the subscription connection reconnects');
      for (let i = 0; i < 5; i++) await emit(worker, draft('run-k', 'p'));
      await emit(worker, draft('run-k', 'p', 'end'));
      await until(() => got.length >= 21, 'every event');
      await new Promise((r) => setTimeout(r, 50));
      expect(got).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    });
  });

  describe('waiting for the end across a reconnect', () => {
    it('delivers the terminal event of a run that ended while the subscription was down, though no event of it came before', async () => {
      const { client: admin, transport: listener } = open();
      // Appends that publish nothing by themselves (the first event is in the log only).
      const worker = open({ publishOnAppend: false }).transport;
      const ends: string[] = [];
      listener.subscribe({ runId: 'run-quiet' }, (e) => ends.push(`${e.type}#${e.seq}`));
      listener.subscribe({ runId: 'run-other' }, () => undefined);
      await until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:run:run-quiet`))[1]) === 1, 'listener subscribed');
      await worker.append(draft('run-quiet', 'p'));
      await admin.client('KILL', 'TYPE', 'pubsub');
      // Ends while the listener's subscription is down: the publish reaches nobody.
      await emit(worker, draft('run-quiet', 'p', 'end'));
      await until(() => ends.length > 0, 'the terminal event');
      expect(ends).toEqual(['PipelineCompleteEvent#2']);
    });
  });

  describe('with the server hub', () => {
    it('a WebSocket client gets a run complete and in order across a killed subscription connection', async () => {
      const { client: admin, transport } = open();
      const worker = open().transport;
      const server = getWebSocketServer({ port: 0, transport, heartbeatMs: 0 });
      const { url } = await server.startServer();
      try {
        const ws = await connect(url);
        try {
          await emit(worker, draft('run-ws', 'p'));
          await ws.subscribe({ run_id: 'run-ws' });
          await until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:run:run-ws`))[1]) === 1, 'hub subscribed');
          for (let i = 0; i < 5; i++) await emit(worker, draft('run-ws', 'p'));
          await ws.waitUntil(() => ws.messages.filter(isEvent).length >= 5, 'five live events');
          await admin.client('KILL', 'TYPE', 'pubsub');
          for (let i = 0; i < 10; i++) await emit(worker, draft('run-ws', 'p'));
          await until(async () => Number((await admin.pubsub('NUMSUB', `${redis.prefix()}ev:run:run-ws`))[1]) === 1, 'hub subscribed again');
          for (let i = 0; i < 3; i++) await emit(worker, draft('run-ws', 'p'));
          await emit(worker, draft('run-ws', 'p', 'end'));
          await ws.waitForEnd('run-ws');
          const seqs = ws.messages.filter(isEvent).map((m) => m.seq);
          expect(seqs).toEqual(Array.from({ length: 19 }, (_, i) => i + 2));
        } finally {
          await ws.close();
        }
      } finally {
        await server.close();
        await transport.close();
      }
    });
  });

  describe('Redis restart', () => {
    it('keeps logs, run state and seqs across a restart with AOF, and subscribers resume in order', async () => {
      const first = await startRedisServer({ appendOnly: true });
      let second: Awaited<ReturnType<typeof startRedisServer>> | null = null;
      const clients = [0, 1].map(() => new RedisClient({ port: first.port, host: '127.0.0.1', maxRetriesPerRequest: null }));
      const [wc, lc] = clients as [RedisClient, RedisClient];
      const worker = new RedisPubSubTransport(wc, { keyPrefix: 'rs:', onError: () => undefined });
      const store = new RedisRunState(wc, { transport: worker });
      const listener = new RedisPubSubTransport(lc, { keyPrefix: 'rs:', onError: () => undefined });
      try {
        const rec = newRunRecord('run-restart', { pipeline_id: 'p', pipeline_type: 'sequential', failure_policy: 'fail_fast', steps: [{ name: 's', index: 0, kind: 'call', tasks: ['t'], depends_on: [], retries: 0, retry_delay_ms: 0, backoff: 'fixed' }] }, null, Date.now());
        const got: number[] = [];
        listener.subscribe({ runId: 'run-restart' }, (e) => got.push(e.seq));
        for (const e of await store.create(rec, beginRun(rec, Date.now()).events)) await worker.publish(e);
        for (let i = 0; i < 4; i++) await emit(worker, draft('run-restart', 'p'));
        await until(() => got.length === 5, 'events before the restart');
        await first.stop();
        second = await startRedisServer({ port: first.port, dir: first.dir, appendOnly: true });
        // The scripts are gone from the new server (NOSCRIPT): they are loaded again on the way.
        const moved = await store.transition('run-restart', (r) => {
          r.inflight += 10;
          return { value: r.inflight, events: [draft('run-restart', 'p')] };
        });
        expect(moved.value).toBe(11);
        expect(moved.events.map((e) => e.seq)).toEqual([6]);
        await worker.publish(moved.events[0]!);
        for (let i = 0; i < 4; i++) await emit(worker, draft('run-restart', 'p'));
        await emit(worker, draft('run-restart', 'p', 'end'));
        await until(() => got.length >= 11, 'every event after the restart');
        expect(got).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
        expect((await store.get('run-restart'))?.inflight).toBe(11);
        expect((await listener.read('run-restart')).events.map((e) => e.seq)).toEqual(got);
      } finally {
        await listener.close();
        await worker.close();
        for (const c of clients) c.disconnect();
        await (second ?? first).stop();
        rmSync(first.dir, { recursive: true, force: true });
      }
    }, 30_000);
  });

  describe('#read and retention', () => {
    it('stores the events as a stream whose ids are the seqs and trims it to maxEventsPerRun', async () => {
      const { client, transport } = open({ maxEventsPerRun: 3 });
      for (let i = 0; i < 7; i++) await transport.append(draft('run-s', 'p', 'log', `line ${i}`));
      const entries = await client.xrange(runLogKey(redis.prefix(), 'run-s'), '-', '+');
      expect(entries.map(([id]) => id)).toEqual(['5-0', '6-0', '7-0']);
      const read = await transport.read('run-s', { since: 2, limit: 2 });
      expect(read).toMatchObject({ first_seq: 5, last_seq: 7, complete: false, ended: false });
      expect(read.events.map((e) => (e.type === 'StepLogEvent' ? e.lines[0] : ''))).toEqual(['line 4', 'line 5']);
    });

    it('keeps a running log for ttlSeconds after its last write and an ended one for endedTtlSeconds', async () => {
      const { client, transport } = open({ ttlSeconds: 1000, endedTtlSeconds: 20 });
      await transport.append(draft('run-t', 'p'));
      const keys = [runLogKey(redis.prefix(), 'run-t'), runLogMetaKey(redis.prefix(), 'run-t')];
      for (const key of keys) expect(await client.ttl(key)).toBeGreaterThan(900);
      await transport.append(draft('run-t', 'p', 'end'));
      for (const key of keys) {
        const ttl = await client.ttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(20);
      }
    });
  });

  describe('#announceInstance / #instances', () => {
    it('lists the live server instances and forgets those that stopped announcing', async () => {
      const a = open().transport;
      const b = open().transport;
      const status = (id: string, clients: number) => ({ id, host: 'h', pid: 1, clients, started_at: new Date().toISOString(), last_heartbeat: new Date().toISOString() });
      await a.announceInstance(status('server-a', 3), 60_000);
      await b.announceInstance(status('server-b', 1), 1);
      await a.announceInstance(status('server-a', 4), 60_000);
      await new Promise((r) => setTimeout(r, 20));
      const live = await b.instances();
      expect(live.map((s) => [s.id, s.clients])).toEqual([['server-a', 4]]);
      await expect(a.announceInstance(status('bad id', 1), 1000)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      await expect(a.announceInstance(status('ok', 1), 0)).rejects.toThrow(/ttlMs must be an integer >= 1/);
    });
  });

  describe('publishing where appended (publishOnAppend)', () => {
    /** Counts raw Pub/Sub messages per channel (what any Redis subscriber would receive). */
    async function rawCounter(channels: string[]): Promise<{ counts: Map<string, number>; close: () => void }> {
      const sub = redis.connect();
      const counts = new Map<string, number>();
      sub.on('message', (channel: string) => counts.set(channel, (counts.get(channel) ?? 0) + 1));
      await sub.subscribe(...channels);
      return { counts, close: () => sub.disconnect() };
    }

    it('with no listener of its own, append publishes from its script: other processes get the event once per channel, and publish() sends nothing more', async () => {
      const p = redis.prefix();
      const raw = await rawCounter([`${p}ev:run:run-pa`, `${p}ev:pipeline:pp`, `${p}ev:all`]);
      const { transport: listener } = open();
      const got: number[] = [];
      listener.subscribe({ runId: 'run-pa' }, (e) => got.push(e.seq));
      await listener.subscribed();
      const worker = open().transport;
      expect(worker.liveChannels('run-pa', 'pp')).toEqual([`${p}ev:run:run-pa`, `${p}ev:pipeline:pp`, `${p}ev:all`]);
      // The first event is only appended: its script published it.
      await worker.append(draft('run-pa', 'pp'));
      for (let i = 0; i < 2; i++) await emit(worker, draft('run-pa', 'pp'));
      await emit(worker, draft('run-pa', 'pp', 'end'));
      await until(() => got.length === 4, 'four events');
      expect(got).toEqual([1, 2, 3, 4]);
      await until(() => [...raw.counts.values()].join() === '4,4,4', 'four messages per channel');
      // Nothing more comes (a ping through the subscriber's own connection orders after any message).
      await worker.redis.publish(`${p}ev:all`, 'marker');
      await until(() => raw.counts.get(`${p}ev:all`) === 5, 'the marker');
      expect([...raw.counts.values()]).toEqual([4, 4, 5]);
      raw.close();
    });

    it('with a listener of its own on the run, its pipeline or *, append publishes nothing: publish() does, and resolves once that listener has the event', async () => {
      const p = redis.prefix();
      const raw = await rawCounter([`${p}ev:run:run-pb`]);
      const { transport } = open();
      const got: number[] = [];
      transport.subscribe({ pipelineId: 'pq' }, (e) => got.push(e.seq));
      expect(transport.liveChannels('run-pb', 'pq')).toEqual(['', '', '']);
      expect(transport.liveChannels('run-other', 'other')).toHaveLength(3);
      const event = await transport.append(draft('run-pb', 'pq'));
      // A marker published after the append comes first: the append published nothing.
      await transport.redis.publish(`${p}ev:run:run-pb`, 'marker');
      await until(() => raw.counts.get(`${p}ev:run:run-pb`) === 1, 'the marker');
      await transport.publish(event as FlowcastEvent);
      expect(got).toEqual([1]);
      await until(() => raw.counts.get(`${p}ev:run:run-pb`) === 2, 'the event');
      raw.close();
    });

    it('publishOnAppend: false leaves every publish to publish(); the option is checked', async () => {
      const p = redis.prefix();
      const raw = await rawCounter([`${p}ev:run:run-pc`]);
      const worker = open({ publishOnAppend: false }).transport;
      expect(worker.liveChannels('run-pc', 'p')).toEqual(['', '', '']);
      const event = await worker.append(draft('run-pc', 'p'));
      await worker.redis.publish(`${p}ev:run:run-pc`, 'marker');
      await until(() => raw.counts.get(`${p}ev:run:run-pc`) === 1, 'the marker');
      await emit(worker, draft('run-pc', 'p'));
      await worker.publish(event as FlowcastEvent);
      await until(() => raw.counts.get(`${p}ev:run:run-pc`) === 3, 'both events');
      expect(() => open({ publishOnAppend: 'yes' as never })).toThrow(/publishOnAppend must be a boolean/);
      raw.close();
    });
  });

  describe('validation', () => {
    it('rejects bad clients, options, channels and arguments with clear errors', async () => {
      const client = redis.connect();
      expect(() => new RedisPubSubTransport(null as unknown as Redis)).toThrow(/ioredis client/);
      expect(() => new RedisPubSubTransport(client, { keyPrefix: 'a{b' })).toThrow(/keyPrefix/);
      expect(() => new RedisPubSubTransport(redis.connect({ keyPrefix: 'x:' }))).toThrow(/use flowcast's keyPrefix option/);
      expect(() => new RedisPubSubTransport(client, { maxEventsPerRun: 0 })).toThrow(/maxEventsPerRun must be an integer >= 1/);
      expect(() => new RedisPubSubTransport(client, { retention: 1 } as never)).toThrow(/unknown option "retention"/);
      const { client: own, transport } = open();
      expect(() => transport.subscribe({ runId: '' }, () => undefined)).toThrow(/runId/);
      expect(() => transport.subscribe('all' as never, () => undefined)).toThrow(/channel must be/);
      expect(() => transport.subscribe('*', 'f' as never)).toThrow(/listener must be a function/);
      await expect(transport.append({ ...draft('run-v', 'p'), type: 'Nope' } as never)).rejects.toThrow(/draft.type must be an event type/);
      await expect(transport.append(draft('run v', 'p'))).rejects.toThrow(/draft.run_id/);
      await expect(transport.read('run-v', { since: -1 })).rejects.toThrow(/since must be/);
      await transport.close();
      await transport.close();
      await expect(transport.append(draft('run-v', 'p'))).rejects.toMatchObject({ code: ErrorCodes.CLOSED });
      // The caller's client stays open: the transport closes only what it opened.
      expect(await own.ping()).toBe('PONG');
    });
  });
});
