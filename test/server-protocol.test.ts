/**
 * The WebSocket protocol, message by message (issue 3 item 2, docs/protocol.md): a real
 * server on port 0, real `ws` clients, real runs. Each reply is matched to its request by
 * the `id` the server echoes. "No event after X" is checked with a sentinel: a run of
 * another subscribed pipeline started after X, whose end the client must see first.
 */
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, type FlowcastEvent } from '../src/index.js';
import { ProtocolErrors } from '../src/server/index.js';
import { logHolds, startFixture } from './helpers/server-fixture.js';
import { isEvent, seqs, type TestClient } from './helpers/ws-client.js';

/** Asserts the connection still works: a ping with a fresh id gets its pong. */
async function stillUsable(client: TestClient): Promise<void> {
  const pong = await client.request({ type: 'ping' });
  expect(pong.type).toBe('pong');
  expect(client.closeInfo).toBeNull();
}

/** Any epoch: a server with a history sends one in every `subscribed`. */
const anyEpoch: unknown = expect.any(String);

describe('#subscribe', () => {
  it('answers subscribed with the pipeline and the echoed id, then streams every event of the pipeline\'s runs in seq order', async () => {
    const f = await startFixture();
    const client = await f.client();
    client.send({ type: 'subscribe', pipeline_id: 'alpha', id: 7 });
    const ack = await client.waitFor((m) => m.type === 'subscribed', 'subscribed');
    expect(ack).toEqual({ type: 'subscribed', pipeline_id: 'alpha', id: 7, epoch: anyEpoch });
    const runId = await f.runToEnd(f.alpha);
    await client.waitForEnd(runId);
    const log = await f.log(runId);
    expect(client.events(runId)).toEqual(log);
    expect(seqs(log)).toEqual([1, 2, 3, 4, 5, 6]);
    // The seed's event fields are all there.
    const start = client.events(runId)[0] as FlowcastEvent & { type: 'PipelineStartEvent' };
    expect(start).toMatchObject({ type: 'PipelineStartEvent', pipeline_id: 'alpha', pipeline_type: 'sequential', input: 1 });
  });

  it('a string id is echoed as it was sent', async () => {
    const f = await startFixture();
    const client = await f.client();
    client.send({ type: 'subscribe', pipeline_id: 'alpha', id: 'a-b' });
    expect(await client.waitFor((m) => m.id === 'a-b', 'the reply')).toEqual({ type: 'subscribed', pipeline_id: 'alpha', id: 'a-b', epoch: anyEpoch });
  });

  it('without an id the reply carries none', async () => {
    const f = await startFixture();
    const client = await f.client();
    client.send({ type: 'subscribe', pipeline_id: 'alpha' });
    expect(await client.waitFor((m) => m.type === 'subscribed', 'subscribed')).toEqual({ type: 'subscribed', pipeline_id: 'alpha', epoch: anyEpoch });
  });

  it('many subscriptions on one socket: events of each pipeline, told apart by pipeline_id, and none of the others', async () => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ pipeline_id: 'alpha' });
    await client.subscribe({ pipeline_id: 'beta' });
    const a = await f.runToEnd(f.alpha);
    const b = await f.runToEnd(f.beta);
    const gated = await f.startGated({ key: 'g', phases: [1] });
    await gated.waitResult({ timeoutMs: 10_000 });
    await client.waitForEnd(a);
    await client.waitForEnd(b);
    // A sentinel after the gated run: once its end is here, an event of `gated` would have been too.
    const sentinel = await f.runToEnd(f.alpha, 2);
    await client.waitForEnd(sentinel);
    expect(client.events(a)).toEqual(await f.log(a));
    expect(client.events(b)).toEqual(await f.log(b));
    expect(client.events().filter((e) => e.pipeline_id === 'gated')).toEqual([]);
  });

  it('"*" gets the events of every pipeline', async () => {
    const f = await startFixture();
    const client = await f.client();
    expect(await client.subscribe({ pipeline_id: '*' })).toMatchObject({ type: 'subscribed', pipeline_id: '*' });
    const a = await f.runToEnd(f.alpha);
    const b = await f.runToEnd(f.beta);
    const g = await f.startGated({ key: 'g', phases: [2] });
    await g.waitResult({ timeoutMs: 10_000 });
    for (const runId of [a, b, g.runId]) {
      await client.waitForEnd(runId);
      expect(client.events(runId)).toEqual(await f.log(runId));
    }
  });

  it('run_id: only that run\'s events, even with other runs of the same pipeline in flight', async () => {
    const f = await startFixture();
    const one = await f.startGated({ key: 'one', phases: [1, 1] });
    const two = await f.startGated({ key: 'two', phases: [1, 1] });
    await logHolds(f, one.runId, 3);
    await logHolds(f, two.runId, 3);
    const client = await f.client();
    expect(await client.subscribe({ run_id: one.runId })).toMatchObject({ type: 'subscribed', run_id: one.runId });
    const snapshot = await client.waitFor((m) => m.type === 'snapshot', 'snapshot');
    expect(snapshot).toMatchObject({ type: 'snapshot', pipeline_id: 'gated', run_id: one.runId, last_seq: 3 });
    f.open('two', 0);
    await two.waitResult({ timeoutMs: 10_000 });
    f.open('one', 0);
    await one.waitResult({ timeoutMs: 10_000 });
    await client.waitForEnd(one.runId);
    expect(client.events(one.runId)).toEqual((await f.log(one.runId)).slice(3));
    expect(client.events(two.runId)).toEqual([]);
  });

  it('event_types is applied on the server: only the listed types arrive', async () => {
    const f = await startFixture();
    const client = await f.client();
    const ack = await client.subscribe({ pipeline_id: 'gated', event_types: ['StepLogEvent', 'PipelineCompleteEvent'] });
    expect(ack).toMatchObject({ event_types: ['StepLogEvent', 'PipelineCompleteEvent'] });
    const run = await f.startGated({ key: 'k', phases: [3] });
    await run.waitResult({ timeoutMs: 10_000 });
    await client.waitForEnd(run.runId);
    const log = await f.log(run.runId);
    const wanted = log.filter((e) => e.type === 'StepLogEvent' || e.type === 'PipelineCompleteEvent');
    expect(wanted).toHaveLength(4);
    expect(client.events(run.runId)).toEqual(wanted);
  });

  it('subscribing again to the same pipeline replaces its event_types', async () => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ pipeline_id: 'alpha', event_types: ['PipelineStartEvent'] });
    await client.subscribe({ pipeline_id: 'alpha', event_types: ['PipelineCompleteEvent'] });
    const runId = await f.runToEnd(f.alpha);
    await client.waitForEnd(runId);
    expect(client.events(runId).map((e) => e.type)).toEqual(['PipelineCompleteEvent']);
  });

  it('since replays the events after that seq from the log, then replay_complete with the last seq', async () => {
    const f = await startFixture();
    const runId = await f.runToEnd(f.alpha);
    const client = await f.client();
    await client.subscribe({ run_id: runId, since: 2 });
    const done = await client.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    expect(done).toEqual({ type: 'replay_complete', run_id: runId, last_seq: 6 });
    expect(client.events(runId)).toEqual((await f.log(runId)).slice(2));
    // replay_complete comes after the replayed events.
    expect(client.messages.indexOf(done)).toBe(client.messages.length - 1);
    expect(client.controls('replay_incomplete')).toEqual([]);
  });

  it('since at the end replays nothing and says replay_complete', async () => {
    const f = await startFixture();
    const runId = await f.runToEnd(f.alpha);
    const client = await f.client();
    await client.subscribe({ run_id: runId, since: 6 });
    expect(await client.waitFor((m) => m.type === 'replay_complete', 'replay_complete')).toEqual({ type: 'replay_complete', run_id: runId, last_seq: 6 });
    expect(client.events()).toEqual([]);
  });

  it('since on a run in flight: the replay, replay_complete, then the live events, with no gap and no duplicate', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [4, 3] });
    await logHolds(f, run.runId, 6);
    const client = await f.client();
    await client.subscribe({ run_id: run.runId, since: 1 });
    await client.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    f.open('k', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await client.waitForEnd(run.runId);
    const log = await f.log(run.runId);
    expect(client.events(run.runId)).toEqual(log.slice(1));
    const complete = client.controls('replay_complete')[0];
    expect(complete).toMatchObject({ last_seq: 6 });
  });

  it('a log trimmed by retention: replay_incomplete with first_seq, then what the log holds, then replay_complete', async () => {
    const f = await startFixture({ broker: { transport: { maxEventsPerRun: 5 } } });
    const run = await f.startGated({ key: 'k', phases: [6] });
    await run.waitResult({ timeoutMs: 10_000 });
    const held = await f.broker.transport.read(run.runId, { since: 0 });
    expect(held.complete).toBe(false);
    expect(held.events).toHaveLength(5);
    const client = await f.client();
    await client.subscribe({ run_id: run.runId, since: 0 });
    await client.waitFor((m) => m.type === 'replay_complete', 'replay_complete');
    const incomplete = client.controls('replay_incomplete');
    expect(incomplete).toEqual([{ type: 'replay_incomplete', run_id: run.runId, requested_since: 0, first_seq: held.first_seq, last_seq: held.last_seq }]);
    expect(held.first_seq).toBe(held.last_seq - 4);
    expect(client.events(run.runId)).toEqual(held.events);
    // The order on the wire: subscribed, replay_incomplete, the events, replay_complete.
    expect(client.messages.map((m) => (isEvent(m) ? 'event' : m.type))).toEqual(['subscribed', 'replay_incomplete', 'event', 'event', 'event', 'event', 'event', 'replay_complete']);
  });

  it('since on a run the log does not know: replay_complete with last_seq 0, then its events once it starts', async () => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ run_id: 'no-such-run', since: 0 });
    expect(await client.waitFor((m) => m.type === 'replay_complete', 'replay_complete')).toEqual({ type: 'replay_complete', run_id: 'no-such-run', last_seq: 0 });
  });
});

describe('#unsubscribe', () => {
  it('answers unsubscribed, and no event of that pipeline follows', async () => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ pipeline_id: 'alpha' });
    await client.subscribe({ pipeline_id: 'beta' });
    const first = await f.runToEnd(f.alpha);
    await client.waitForEnd(first);
    const reply = await client.request({ type: 'unsubscribe', pipeline_id: 'alpha' });
    expect(reply).toMatchObject({ type: 'unsubscribed', pipeline_id: 'alpha' });
    const after = client.messages.length;
    const second = await f.runToEnd(f.alpha);
    const sentinel = await f.runToEnd(f.beta);
    await client.waitForEnd(sentinel);
    expect(client.messages.slice(after).filter((m) => isEvent(m) && m.run_id === second)).toEqual([]);
    expect(client.events(first)).toHaveLength(6);
  });

  it('by run_id', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'k', phases: [1, 1] });
    const client = await f.client();
    await client.subscribe({ run_id: run.runId });
    await client.subscribe({ pipeline_id: 'beta' });
    expect(await client.request({ type: 'unsubscribe', run_id: run.runId })).toMatchObject({ type: 'unsubscribed', run_id: run.runId });
    f.open('k', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    const sentinel = await f.runToEnd(f.beta);
    await client.waitForEnd(sentinel);
    expect(client.events(run.runId)).toEqual([]);
  });

  it('"*" after subscribing to "*"', async () => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ pipeline_id: '*' });
    expect(await client.request({ type: 'unsubscribe', pipeline_id: '*' })).toMatchObject({ type: 'unsubscribed', pipeline_id: '*' });
  });

  it('when not subscribed: error not_subscribed with the echoed id, and the connection stays usable', async () => {
    const f = await startFixture();
    const client = await f.client();
    const reply = await client.request({ type: 'unsubscribe', pipeline_id: 'alpha' });
    expect(reply).toMatchObject({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED });
    expect(reply.message).toContain('alpha');
    await client.subscribe({ pipeline_id: 'alpha' });
    await client.request({ type: 'unsubscribe', pipeline_id: 'alpha' });
    expect(await client.request({ type: 'unsubscribe', pipeline_id: 'alpha' })).toMatchObject({ type: 'error', code: ProtocolErrors.NOT_SUBSCRIBED });
    await stillUsable(client);
  });
});

describe('#ping', () => {
  it('is answered pong with a timestamp and the echoed id', async () => {
    const f = await startFixture();
    const client = await f.client();
    const pong = await client.request({ type: 'ping' });
    expect(pong).toMatchObject({ type: 'pong' });
    expect(typeof pong.id).toBe('string');
    expect(new Date(pong.timestamp as string).toISOString()).toBe(pong.timestamp);
    client.send({ type: 'ping' });
    expect(await client.waitFor((m) => m.type === 'pong' && m.id === undefined, 'a pong without id')).toEqual({ type: 'pong', timestamp: expect.any(String) as string });
  });
});

describe('malformed messages', () => {
  const cases: { name: string; frame: string | Buffer; binary?: boolean; code: string; says?: RegExp }[] = [
    { name: 'not JSON', frame: 'subscribe alpha', code: ProtocolErrors.BAD_JSON, says: /JSON/ },
    { name: 'truncated JSON', frame: '{"type":"subscribe","pipeline_id":"al', code: ProtocolErrors.BAD_JSON },
    { name: 'an empty frame', frame: '', code: ProtocolErrors.BAD_JSON },
    { name: 'a JSON array', frame: '[{"type":"ping"}]', code: ProtocolErrors.BAD_MESSAGE, says: /object/ },
    { name: 'a JSON string', frame: '"ping"', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'a JSON number', frame: '42', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'JSON null', frame: 'null', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'no type', frame: '{"pipeline_id":"alpha"}', code: ProtocolErrors.BAD_MESSAGE, says: /type/ },
    { name: 'an unknown type', frame: '{"type":"subscribe_all"}', code: ProtocolErrors.BAD_MESSAGE, says: /subscribe_all/ },
    { name: 'a type of the wrong type', frame: '{"type":1}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'subscribe without pipeline_id or run_id', frame: '{"type":"subscribe"}', code: ProtocolErrors.BAD_MESSAGE, says: /pipeline_id/ },
    { name: 'both pipeline_id and run_id', frame: '{"type":"subscribe","pipeline_id":"alpha","run_id":"r1"}', code: ProtocolErrors.BAD_MESSAGE, says: /exactly one/ },
    { name: 'since without run_id', frame: '{"type":"subscribe","pipeline_id":"alpha","since":3}', code: ProtocolErrors.BAD_MESSAGE, says: /since/ },
    { name: 'an extra field', frame: '{"type":"subscribe","pipeline_id":"alpha","channel":"x"}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'an extra field on ping', frame: '{"type":"ping","at":1}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'pipeline_id a number', frame: '{"type":"subscribe","pipeline_id":5}', code: ProtocolErrors.BAD_MESSAGE, says: /pipeline_id/ },
    { name: 'pipeline_id empty', frame: '{"type":"subscribe","pipeline_id":""}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'pipeline_id with a space', frame: '{"type":"subscribe","pipeline_id":"a b"}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'pipeline_id too long', frame: JSON.stringify({ type: 'subscribe', pipeline_id: 'p'.repeat(201) }), code: ProtocolErrors.BAD_MESSAGE },
    { name: 'since negative', frame: '{"type":"subscribe","run_id":"r1","since":-1}', code: ProtocolErrors.BAD_MESSAGE, says: /since/ },
    { name: 'since a string', frame: '{"type":"subscribe","run_id":"r1","since":"3"}', code: ProtocolErrors.BAD_MESSAGE, says: /since/ },
    { name: 'since a fraction', frame: '{"type":"subscribe","run_id":"r1","since":1.5}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'run_id "*"', frame: '{"type":"subscribe","run_id":"*"}', code: ProtocolErrors.BAD_MESSAGE, says: /\*/ },
    { name: 'an unknown event type', frame: '{"type":"subscribe","pipeline_id":"alpha","event_types":["StepFooEvent"]}', code: ProtocolErrors.BAD_MESSAGE, says: /event_types/ },
    { name: 'event_types empty', frame: '{"type":"subscribe","pipeline_id":"alpha","event_types":[]}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'event_types not a list', frame: '{"type":"subscribe","pipeline_id":"alpha","event_types":"StepLogEvent"}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'event_types repeated', frame: '{"type":"subscribe","pipeline_id":"alpha","event_types":["StepLogEvent","StepLogEvent"]}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'an id that is an object', frame: '{"type":"ping","id":{}}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'unsubscribe without a target', frame: '{"type":"unsubscribe"}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'unsubscribe with since', frame: '{"type":"unsubscribe","run_id":"r1","since":2}', code: ProtocolErrors.BAD_MESSAGE },
    { name: 'a binary frame', frame: Buffer.from('{"type":"ping"}'), binary: true, code: ProtocolErrors.BINARY_NOT_SUPPORTED },
  ];

  it.each(cases)('$name: answered with error $code, and the connection stays open and usable', async ({ frame, binary, code, says }) => {
    const f = await startFixture();
    const client = await f.client();
    await client.subscribe({ pipeline_id: 'alpha' });
    client.sendRaw(frame, binary === true);
    const error = await client.waitFor((m) => m.type === 'error', 'an error');
    expect(error).toMatchObject({ type: 'error', code });
    expect(typeof error.message).toBe('string');
    if (says !== undefined) expect(error.message).toMatch(says);
    await stillUsable(client);
    // The subscription made before still delivers.
    const runId = await f.runToEnd(f.alpha);
    await client.waitForEnd(runId);
    expect(client.events(runId)).toEqual(await f.log(runId));
    expect(client.controls('error')).toHaveLength(1);
  });

  it('an invalid message that carries an id gets it back in the error', async () => {
    const f = await startFixture();
    const client = await f.client();
    client.send({ type: 'subscribe', id: 'x1' });
    expect(await client.waitFor((m) => m.id === 'x1', 'the error')).toMatchObject({ type: 'error', code: ProtocolErrors.BAD_MESSAGE, id: 'x1' });
    client.send({ type: 'bogus', id: 12 });
    expect(await client.waitFor((m) => m.id === 12, 'the error')).toMatchObject({ type: 'error', code: ProtocolErrors.BAD_MESSAGE, id: 12 });
  });

  it('every event type is accepted in event_types', async () => {
    const f = await startFixture();
    const client = await f.client();
    expect(await client.subscribe({ pipeline_id: 'alpha', event_types: [...EVENT_TYPES] })).toMatchObject({ event_types: [...EVENT_TYPES] });
  });

  it('too many subscriptions on one connection: error too_many_subscriptions, the others keep working', async () => {
    const f = await startFixture({ server: { maxSubscriptions: 2 } });
    const client = await f.client();
    await client.subscribe({ pipeline_id: 'alpha' });
    await client.subscribe({ pipeline_id: 'gated' });
    expect(await client.request({ type: 'subscribe', pipeline_id: 'beta' })).toMatchObject({ type: 'error', code: ProtocolErrors.TOO_MANY_SUBSCRIPTIONS });
    const runId = await f.runToEnd(f.alpha);
    await client.waitForEnd(runId);
    expect(client.events(runId)).toHaveLength(6);
  });
});
