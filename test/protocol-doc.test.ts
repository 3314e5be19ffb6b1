/**
 * docs/protocol.md is the contract: its schema blocks must be the schemas in the code,
 * its examples must validate, and every message a real server sends (events of every
 * type and every control message) must validate against the documented schema.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { DataflowPipeline, EVENT_TYPES, InMemoryBroker, InMemoryPipelineStorage, Pipeline, PipelineTrackingManager } from '../src/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { CONTROL_SCHEMAS, EVENT_SCHEMAS, allProtocolSchemas } from '../src/server/protocol-schemas.js';
import { PROTOCOL_SCHEMAS } from '../src/server/protocol.js';
import { renderProtocolDoc } from '../scripts/protocol-doc.js';
import { connect, isEvent, type ServerMessage } from './helpers/ws-client.js';
import { deferred } from './helpers/collect.js';

const docPath = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));
const doc = readFileSync(docPath, 'utf8');

/** Control message `type` → schema name. */
const CONTROL_BY_TYPE: Record<string, string> = {
  subscribed: 'SubscribedMessage',
  unsubscribed: 'UnsubscribedMessage',
  pong: 'PongMessage',
  error: 'ErrorMessage',
  snapshot: 'SnapshotMessage',
  replay_complete: 'ReplayCompleteMessage',
  replay_incomplete: 'ReplayIncompleteMessage',
  position: 'PositionMessage',
  engine_status: 'EngineStatusMessage',
};

function schemaOf(message: ServerMessage): TSchema {
  const schema = isEvent(message) ? EVENT_SCHEMAS[message.type] : CONTROL_SCHEMAS[CONTROL_BY_TYPE[message.type] ?? ''];
  if (schema === undefined) throw new Error(`no documented schema for a message of type ${JSON.stringify(message.type)}`);
  return schema;
}

function expectValid(schema: TSchema, value: unknown, what: string): void {
  const errors = [...Value.Errors(schema, value)].map((e) => `${e.path || '/'}: ${e.message}`);
  expect(errors, `${what} does not match its schema: ${JSON.stringify(value)}`).toEqual([]);
}

describe('docs/protocol.md', () => {
  it('shows exactly the schemas of the code, one block per message (npm run docs:protocol rewrites them)', () => {
    expect(renderProtocolDoc(doc)).toBe(doc);
    const names = [...doc.matchAll(/<!-- schema:([A-Za-z]+) -->/g)].map((m) => m[1]);
    expect(new Set(names)).toEqual(new Set(Object.keys(allProtocolSchemas())));
    expect(names.length).toBe(new Set(names).size);
    for (const type of EVENT_TYPES) expect(names).toContain(type);
    for (const name of Object.keys(PROTOCOL_SCHEMAS)) expect(names).toContain(name);
  });

  it('refuses a document that lacks a schema block or names an unknown schema', () => {
    expect(() => renderProtocolDoc(doc.replace('<!-- schema:PingMessage -->', '<!-- no marker -->'))).toThrow(/no schema block for: PingMessage/);
    expect(() => renderProtocolDoc(`${doc}\n<!-- schema:Nope -->\n\`\`\`json\n{}\n\`\`\`\n`)).toThrow(/schema:Nope names no schema/);
  });

  it('gives an example for every message, and each example validates against its schema', () => {
    const examples = [...doc.matchAll(/<!-- example:([A-Za-z]+) -->\n```json\n([\s\S]*?)\n```/g)];
    const named = new Set(examples.map((m) => m[1]));
    expect(named).toEqual(new Set(Object.keys(allProtocolSchemas())));
    const schemas = allProtocolSchemas();
    for (const [, name, body] of examples) expectValid(schemas[name as string] as TSchema, JSON.parse(body as string), `the example of ${name}`);
  });

  it('client schemas refuse what the server refuses', () => {
    const subscribe = PROTOCOL_SCHEMAS.SubscribeMessage as TSchema;
    expect(Value.Check(subscribe, { type: 'subscribe', pipeline_id: 'etl' })).toBe(true);
    expect(Value.Check(subscribe, { type: 'subscribe', pipelineId: 'etl' })).toBe(false);
    expect(Value.Check(subscribe, { type: 'subscribe', run_id: 'r', since: -1 })).toBe(false);
    expect(Value.Check(subscribe, { type: 'subscribe', pipeline_id: 'etl', event_types: ['NoSuchEvent'] })).toBe(false);
  });
});

describe('what a real server sends matches docs/protocol.md', () => {
  it('every event type and every control message of a session validates against its documented schema', async () => {
    const broker = new InMemoryBroker({ onError: () => undefined });
    const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
    const server = getWebSocketServer({ host: '127.0.0.1', port: 0, broker, tracking, heartbeatMs: 0 });
    await server.startServer();
    const hold = deferred();
    try {
      const chatty = broker.task('chatty', async (n: number, ctx) => {
        ctx.log(`got ${n}`);
        ctx.progress(0.5, 'half way');
        await hold.promise;
        return Array.from({ length: n }, (_, i) => i);
      });
      const double = broker.task('double', (n: number) => n * 2);
      let calls = 0;
      const flaky = broker.task('flaky', () => {
        calls++;
        throw new Error(`broken ${calls}`);
      }, { retries: 1, retryDelayMs: 1 });
      const waits = broker.task('waits', (_: number, ctx) => new Promise<number>((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')))));
      const ok = new Pipeline<number>(broker, { id: 'p_ok' }).callNext(chatty).map(double).withTracking(tracking);
      const fails = new DataflowPipeline(broker, { id: 'p_dag' }).step('a', flaky).step('b', double, { dependsOn: ['a'] }).withTracking(tracking);
      const cancelled = new Pipeline<number>(broker, { id: 'p_cancel' }).callNext(waits).withTracking(tracking);

      const client = await connect(server.url);
      // A run in flight before the subscription: the late join gets its snapshot.
      const okRun = await ok.kiq(3);
      await tracking.getStatus(okRun.runId);
      client.send({ type: 'ping', id: 'p1' });
      client.send({ type: 'subscribe', pipeline_id: '*', positions: true, id: 1 });
      client.send({ type: 'subscribe', channel: 'engine', id: 2 });
      client.send({ type: 'subscribe', pipelineId: 'typo', id: 3 });
      client.send('not json');
      await client.waitFor((m) => m.type === 'subscribed' && m.id === 1, 'the * subscription');
      hold.resolve();
      await okRun.waitResult();
      const failRun = await fails.kiq(1);
      await expect(failRun.waitResult()).rejects.toThrow();
      const cancelRun = await cancelled.kiq(1);
      await client.waitFor((m) => m.type === 'StepStartEvent' && m.run_id === cancelRun.runId, 'the waiting step');
      await cancelRun.cancel('enough');
      await expect(cancelRun.waitResult()).rejects.toThrow();
      await client.waitFor((m) => m.type === 'PipelineCancelledEvent', 'the cancel event');
      // A resume of the cancelled run (a new attempt of it), cancelled again.
      const resumed = await cancelled.resume(cancelRun.runId);
      await client.waitFor((m) => m.type === 'PipelineResumeEvent', 'the resume event');
      await resumed.cancel('enough again');
      // A run subscription with since replays from the log; one without gets a snapshot.
      client.send({ type: 'subscribe', run_id: okRun.runId, since: 0, id: 4 });
      await client.waitFor((m) => m.type === 'replay_complete' && m.run_id === okRun.runId, 'the replay');
      // A resume from another history, and a pipeline resumed from its offset.
      client.send({ type: 'subscribe', run_id: failRun.runId, since: 2, epoch: 'another', id: 7 });
      await client.waitFor((m) => m.type === 'replay_complete' && m.run_id === failRun.runId, 'the replay from the start');
      client.send({ type: 'subscribe', pipeline_id: 'p_ok', offset: 0, epoch: 'another', id: 8 });
      await client.waitFor((m) => m.id === 8, 'the resume of p_ok');
      client.send({ type: 'unsubscribe', pipeline_id: '*', id: 5 });
      client.send({ type: 'unsubscribe', pipeline_id: 'never', id: 6 });
      await client.waitFor((m) => m.type === 'error' && m.id === 6, 'the not_subscribed error');
      await client.waitFor((m) => m.type === 'engine_status', 'an engine status', 10_000);

      const seen = new Set<string>();
      for (const message of client.messages) {
        expectValid(schemaOf(message), message, `a ${message.type} message`);
        seen.add(message.type);
      }
      const expected = [...EVENT_TYPES, 'subscribed', 'unsubscribed', 'pong', 'error', 'snapshot', 'replay_complete', 'replay_incomplete', 'position', 'engine_status'];
      expect([...seen].sort()).toEqual(expect.arrayContaining(expected.sort()));
      await client.close();
    } finally {
      hold.resolve();
      await server.close();
      await broker.close();
    }
  });
});
