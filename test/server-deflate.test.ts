/**
 * permessage-deflate for large payloads (seed 000 §9.4): `perMessageDeflate` of the server
 * and `flowcast serve --deflate [threshold]`. Off by default. A client that offers the
 * extension gets messages over the threshold compressed (RSV1 set on the frame, read
 * here off the wire by a raw socket client) and whole once inflated; smaller ones and
 * clients that do not offer it get plain frames. Real server on port 0, real sockets.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { constants as zlib, inflateRawSync } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { Pipeline, type FlowcastEvent } from '../src/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import { flowcast } from './helpers/cli.js';
import { waitUntil } from './helpers/collect.js';
import { onCleanup, startFixture, type Fixture } from './helpers/server-fixture.js';
import { connect, isEvent } from './helpers/ws-client.js';

vi.setConfig({ testTimeout: 60_000 });

/** One frame as it came over the wire (server frames are not masked). */
interface WireFrame {
  rsv1: boolean;
  opcode: number;
  /** Bytes of the payload on the wire. */
  wireBytes: number;
  /** The message: inflated when RSV1 is set. */
  text: string;
}

/**
 * A WebSocket client on a bare TCP socket: it offers permessage-deflate as browsers do,
 * sends masked text frames, and keeps every frame the server sends with its RSV1 bit.
 * It inflates each compressed message on its own: the server must not use context
 * takeover (it says `server_no_context_takeover`), or this fails.
 */
class RawClient {
  readonly frames: WireFrame[] = [];
  extensions = '';
  #buffer = Buffer.alloc(0);
  #socket: Socket | null = null;

  async open(url: string, offerDeflate: boolean, offer = 'permessage-deflate; client_max_window_bits'): Promise<void> {
    const { hostname, port } = new URL(url);
    const socket = netConnect(Number(port), hostname);
    this.#socket = socket;
    onCleanup(() => {
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => resolve());
    });
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET / HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (offerDeflate ? `Sec-WebSocket-Extensions: ${offer}\r\n` : '') +
        '\r\n',
    );
    let head = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        const response = head.subarray(0, end).toString('latin1');
        if (!response.startsWith('HTTP/1.1 101')) {
          reject(new Error(`no upgrade: ${response}`));
          return;
        }
        this.extensions = /^sec-websocket-extensions: (.*)$/im.exec(response)?.[1] ?? '';
        this.#push(head.subarray(end + 4));
        socket.on('data', (more: Buffer) => this.#push(more));
        resolve();
      };
      socket.on('data', onData);
    });
  }

  #push(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const b = this.#buffer;
      if (b.length < 2) return;
      let length = (b[1] as number) & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      if (b.length < offset + length) return;
      const payload = b.subarray(offset, offset + length);
      const rsv1 = ((b[0] as number) & 0x40) !== 0;
      const data = rsv1 ? inflateRawSync(Buffer.concat([payload, Buffer.from([0x00, 0x00, 0xff, 0xff])]), { finishFlush: zlib.Z_SYNC_FLUSH }) : payload;
      this.frames.push({ rsv1, opcode: (b[0] as number) & 0x0f, wireBytes: length, text: data.toString('utf8') });
      this.#buffer = b.subarray(offset + length);
    }
  }

  /** Sends one masked text frame (clients must mask). */
  send(message: unknown): void {
    const payload = Buffer.from(JSON.stringify(message));
    const mask = randomBytes(4);
    const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)));
    this.#socket?.write(Buffer.concat([header, mask, masked]));
  }

  messages(): { frame: WireFrame; message: Record<string, unknown> }[] {
    return this.frames.filter((f) => f.opcode === 1).map((frame) => ({ frame, message: JSON.parse(frame.text) as Record<string, unknown> }));
  }
}

/**
 * A pipeline `big` on the fixture's broker: its step logs one line of `size` characters,
 * `unit` repeated (a unit longer than a small compression window compresses well only
 * with a large one).
 */
function bigPipeline(f: Fixture, size: number, unit = 'flowcast compresses large log lines. '): Pipeline<number, number> {
  const line = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  const task = f.broker.task('big_log', (n: number, ctx) => {
    ctx.log(line);
    return n;
  });
  return new Pipeline<number>(f.broker, { id: 'big' }).callNext(task).withTracking(f.tracking);
}

const isLog = (m: Record<string, unknown>): boolean => m.type === 'StepLogEvent';

describe('permessage-deflate (seed 000 §9.4)', () => {
  it('with perMessageDeflate, a client that offers it gets large events compressed on the wire and whole, small messages plain', async () => {
    const f = await startFixture({ server: { perMessageDeflate: { threshold: 1024 } } });
    const pipeline = bigPipeline(f, 100_000);
    const raw = new RawClient();
    await raw.open(f.server.url, true);
    expect(raw.extensions).toMatch(/^permessage-deflate; server_no_context_takeover/);
    raw.send({ type: 'subscribe', pipeline_id: 'big', id: 1 });
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'subscribed'), 'subscribed', 10_000);
    const runId = await f.runToEnd(pipeline);
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'PipelineCompleteEvent'), 'the end of the run', 10_000);

    const log = raw.messages().find((m) => isLog(m.message));
    expect(log?.frame.rsv1).toBe(true);
    expect(log?.frame.wireBytes).toBeLessThan(Buffer.byteLength(log?.frame.text ?? '') / 10);
    // Inflated, the event is the one in the run's log, byte for byte in its fields.
    const stored = (await f.log(runId)).find((e) => e.type === 'StepLogEvent');
    expect(log?.message).toEqual(JSON.parse(JSON.stringify(stored)));
    expect((log?.message.lines as string[])[0]).toHaveLength(100_000);
    // Below the threshold: plain frames.
    const subscribed = raw.messages().find((m) => m.message.type === 'subscribed');
    expect(subscribed?.frame.rsv1).toBe(false);
    const start = raw.messages().find((m) => m.message.type === 'StepStartEvent');
    expect(start?.frame.rsv1).toBe(false);
    // Every event of the run, in order.
    expect(raw.messages().filter((m) => m.message.run_id === runId).map((m) => m.message.seq)).toEqual((await f.log(runId)).map((e) => e.seq));

    // A client that does not offer the extension, on the same server: plain frames, same events.
    const plain = await f.client({ ws: { perMessageDeflate: false } });
    expect(plain.ws.extensions).toBe('');
    await plain.subscribe({ run_id: runId, since: 0 });
    await plain.waitForEnd(runId);
    expect(plain.events(runId).map((e) => e.event_id)).toEqual((await f.log(runId)).map((e) => e.event_id));
    const plainLog = plain.events(runId).find((e) => e.type === 'StepLogEvent') as FlowcastEvent & { lines: string[] };
    expect(plainLog.lines[0]).toHaveLength(100_000);
  });

  it('a replay and a burst of events to deflate clients (ws and a raw one) arrive compressed, whole and in order', async () => {
    const f = await startFixture({ server: { perMessageDeflate: { threshold: 0 } } });
    const run = await f.startGated({ key: 'z', phases: [300, 300] });
    const c = await f.client();
    expect(c.ws.extensions).toMatch(/permessage-deflate/);
    await c.subscribe({ run_id: run.runId, since: 0 });
    const raw = new RawClient();
    await raw.open(f.server.url, true);
    raw.send({ type: 'subscribe', run_id: run.runId, since: 0, id: 1 });
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'replay_complete'), 'replay_complete', 10_000);
    f.open('z', 0);
    await c.waitForEnd(run.runId);
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'PipelineCompleteEvent'), 'the end of the run', 10_000);
    const log = await f.log(run.runId);
    expect(c.events(run.runId).map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
    expect(c.messages.filter(isEvent).length).toBe(log.length);
    const rawEvents = raw.messages().filter((m) => m.message.run_id === run.runId && typeof m.message.seq === 'number');
    expect(rawEvents.map((m) => m.message.event_id)).toEqual(log.map((e) => e.event_id));
    // Threshold 0: every message compressed, control messages too.
    expect(raw.frames.every((fr) => fr.rsv1)).toBe(true);
  });

  it('a client that asks for a smaller compression window gets frames made for it, next to one with the default window', async () => {
    const f = await startFixture({ server: { perMessageDeflate: true } });
    const pipeline = bigPipeline(f, 50_000, randomBytes(1000).toString('hex'));
    const small = new RawClient();
    await small.open(f.server.url, true, 'permessage-deflate; server_max_window_bits=9');
    expect(small.extensions).toMatch(/server_max_window_bits=9/);
    const usual = new RawClient();
    await usual.open(f.server.url, true);
    for (const c of [small, usual]) c.send({ type: 'subscribe', pipeline_id: 'big', id: 1 });
    await waitUntil(() => [small, usual].every((c) => c.messages().some((m) => m.message.type === 'subscribed')), 'subscribed', 10_000);
    const runId = await f.runToEnd(pipeline);
    await waitUntil(() => [small, usual].every((c) => c.messages().some((m) => m.message.type === 'PipelineCompleteEvent')), 'the end of the run', 10_000);
    const frames = [small, usual].map((c) => c.messages().find((m) => isLog(m.message)));
    expect(frames.map((m) => m?.frame.rsv1)).toEqual([true, true]);
    expect(frames[0]?.message).toEqual(frames[1]?.message);
    expect(frames[0]?.message.run_id).toBe(runId);
    // Repeats 2,000 bytes apart: found with the default 32 KB window, not with 512 bytes.
    expect(frames[1]?.frame.wireBytes).toBeLessThan(5_000);
    expect(frames[0]?.frame.wireBytes).toBeGreaterThan(20_000);
  });

  it('is off by default: a client that offers it gets plain frames', async () => {
    const f = await startFixture();
    const pipeline = bigPipeline(f, 20_000);
    const raw = new RawClient();
    await raw.open(f.server.url, true);
    expect(raw.extensions).toBe('');
    raw.send({ type: 'subscribe', pipeline_id: 'big', id: 1 });
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'subscribed'), 'subscribed', 10_000);
    await f.runToEnd(pipeline);
    await waitUntil(() => raw.messages().some((m) => m.message.type === 'PipelineCompleteEvent'), 'the end of the run', 10_000);
    expect(raw.frames.some((fr) => fr.rsv1)).toBe(false);
  });

  it('refuses a perMessageDeflate that is not false, true or { threshold }', () => {
    expect(() => getWebSocketServer({ port: 0, perMessageDeflate: 'yes' as never })).toThrow('perMessageDeflate must be false, true or { threshold }, received "yes"');
    expect(() => getWebSocketServer({ port: 0, perMessageDeflate: { threshold: -1 } })).toThrow('perMessageDeflate.threshold must be an integer >= 0, received -1');
    expect(() => getWebSocketServer({ port: 0, perMessageDeflate: { level: 9 } as never })).toThrow(/unknown option "level"/);
  });
});

describe('flowcast serve --deflate [threshold]', () => {
  it('negotiates permessage-deflate with clients that offer it, and says so in the banner', async () => {
    const child = flowcast(['serve', '--port', '0', '--deflate', '512']);
    let port = 0;
    await waitUntil(() => {
      port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(child.stdout())?.[1] ?? 0);
      return port > 0 || child.child.exitCode !== null;
    }, 'the serve banner', 30_000);
    expect(child.stderr()).toBe('');
    expect(child.stdout()).toMatch(/Compression\s+permessage-deflate for messages of 512 bytes or more/);
    const c = await connect(`ws://127.0.0.1:${port}/ws`);
    onCleanup(() => c.close());
    expect(c.ws.extensions).toMatch(/^permessage-deflate/);
    child.child.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);

    const bad = flowcast(['serve', '--port', '0', '--deflate', 'lots']);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toContain('--deflate');
  });
});
