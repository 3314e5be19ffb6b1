/**
 * examples/python-producer run as its README says, on the test's redis-server: the
 * Python job's lines reach a WebSocket client of another flowcast server on the same
 * Redis (this test's) live, as StepLogEvent events inside the step, in the order
 * Python wrote them, with gapless seqs.
 */
import { describe, expect, it } from 'vitest';
import type { FlowcastEvent } from '../src/events/types.js';
import { RedisPubSubTransport } from '../src/redis/transport.js';
import { getWebSocketServer } from '../src/server/index.js';
import { groupGone, runExample } from './helpers/example-process.js';
import { useRedisServer } from './helpers/redis.js';
import { onCleanup } from './helpers/server-fixture.js';
import { connect, isEvent } from './helpers/ws-client.js';

const redis = useRedisServer();

describe('examples/python-producer', () => {
  it('python3 writes lines to the run; a WebSocket client of a server on the same Redis receives them in order', async () => {
    const prefix = redis.prefix();
    const transport = new RedisPubSubTransport(redis.connect(), { keyPrefix: prefix });
    onCleanup(() => transport.close());
    const server = getWebSocketServer({ port: 0, transport, heartbeatMs: 0 });
    const { url } = await server.startServer();
    onCleanup(() => server.close());
    const ws = await connect(url);
    onCleanup(() => ws.close());
    await ws.subscribe({ pipeline_id: 'train' });

    const example = runExample(process.execPath, ['--import', 'tsx', 'examples/python-producer/main.ts', '--once'], {
      REDIS_URL: redis.url,
      FLOWCAST_KEY_PREFIX: prefix,
      PORT: '0',
      EPOCHS: '4',
      EPOCH_SECONDS: '0.1',
    });
    const [, runId] = await example.waitFor(/started run ([0-9a-f-]{36}) of "train"/, 'the run started');
    await ws.waitForEnd(runId!, 60_000);
    expect(await example.exited).toMatchObject({ code: 0 });
    await groupGone(example);
    expect(example.output()).toContain('train.py: 4 epochs reported to run');

    const events = ws.messages.filter(isEvent).filter((e) => e.run_id === runId) as unknown as FlowcastEvent[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const shape = events.map((e) => {
      if (e.type === 'StepLogEvent') return `log ${e.step_name}: ${e.lines.join(' | ')}`;
      if (e.type === 'StepProgressEvent') return `progress ${e.progress} ${e.message ?? ''}`;
      return e.type;
    });
    expect(shape[0]).toBe('PipelineStartEvent');
    expect(shape[1]).toBe('StepStartEvent');
    expect(shape[2]).toMatch(/^log train: python 3\.\d+\.\d+\S*: training for 4 epochs$/);
    expect(shape.slice(3)).toEqual([
      'log train: epoch 1: loss 0.6000',
      'progress 0.25 epoch 1 of 4',
      'log train: epoch 2: loss 0.3600',
      'progress 0.5 epoch 2 of 4',
      'log train: epoch 3: loss 0.2160',
      'progress 0.75 epoch 3 of 4',
      'log train: epoch 4: loss 0.1296',
      'progress 1 epoch 4 of 4',
      'log train: done: final loss 0.1296',
      'StepCompleteEvent',
      'PipelineCompleteEvent',
    ]);
  }, 120_000);
});
