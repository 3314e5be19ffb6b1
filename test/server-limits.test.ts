/**
 * Limits and hardening (issue 3 items 5 and 6, seed 000 §10.3-10.4): the Origin
 * allow-list, the connection cap, the per-connection rate limit, maxPayload, a barrage of
 * 1,000 malformed, oversized and binary frames, the heartbeat that drops a dead peer, the
 * slow consumer closed 4008 (and made whole again by a replay), and native TLS. Each time
 * a well-behaved client next to the bad one keeps getting every event. Timeouts only
 * bound the waits.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pipeline, type RunHandle } from '../src/index.js';
import { CloseCodes, ProtocolErrors } from '../src/server/index.js';
import { waitUntil } from './helpers/collect.js';
import { logHolds, onCleanup, startFixture, type Fixture } from './helpers/server-fixture.js';
import { connect, connectRejected, isEvent, seqs, type TestClient } from './helpers/ws-client.js';

/** Runs alpha once and asserts `client` got the whole run. */
async function stillReceives(f: Fixture, client: TestClient): Promise<void> {
  const runId = await f.runToEnd(f.alpha);
  await client.waitForEnd(runId);
  expect(client.events(runId)).toEqual(await f.log(runId));
  expect(client.closeInfo).toBeNull();
}

describe('allowedOrigins', () => {
  it('an upgrade from an Origin not on the list gets 403; listed origins and clients without Origin connect', async () => {
    const f = await startFixture({ server: { allowedOrigins: ['http://good.example', 'https://app.example'] } });
    expect(await connectRejected(f.server.url, { origin: 'http://evil.example' })).toBe(403);
    expect(await connectRejected(f.server.url, { origin: 'http://good.example.evil.example' })).toBe(403);
    expect(await connectRejected(f.server.url, { origin: 'null' })).toBe(403);
    expect(await connectRejected(f.server.url, { origin: 'http://evil.example', path: '/ws' })).toBe(403);
    const good = await f.client({ origin: 'https://app.example' });
    await good.subscribe({ pipeline_id: 'alpha' });
    const script = await f.client();
    await script.subscribe({ pipeline_id: 'alpha' });
    const runId = await f.runToEnd(f.alpha);
    for (const c of [good, script]) {
      await c.waitForEnd(runId);
      expect(c.events(runId)).toHaveLength(6);
    }
    expect(f.server.connections).toBe(2);
  });

  it('an unknown path gets 404 on upgrade', async () => {
    const f = await startFixture();
    expect(await connectRejected(f.server.url, { path: '/socket.io/' })).toBe(404);
  });
});

describe('maxConnections', () => {
  it('past the cap a connection is refused with 503 before its handshake; once one leaves, a new one gets in', async () => {
    const f = await startFixture({ server: { maxConnections: 2 } });
    const one = await f.client();
    const two = await f.client();
    expect(await connectRejected(f.server.url)).toBe(503);
    await one.subscribe({ pipeline_id: 'alpha' });
    await two.close();
    await waitUntil(() => f.server.connections === 1 && f.server.sockets.open === 1, 'the server to count one connection');
    const four = await f.client();
    await four.subscribe({ pipeline_id: 'alpha' });
    await stillReceives(f, four);
    await stillReceives(f, one);
    expect(f.server.sockets.refusedTotal).toBe(1);
  });
});

describe('rate limit', () => {
  it('a burst past the limit gets error rate_limited, and going on closes the connection 4029; the other connections are not touched', async () => {
    const f = await startFixture({ server: { messagesPerSecond: 5, messageBurst: 5 } });
    const polite = await f.client();
    await polite.subscribe({ pipeline_id: 'alpha' });
    const abuser = await f.client();
    for (let i = 0; i < 30; i++) abuser.send({ type: 'ping', id: i });
    const closed = await abuser.waitForClose();
    expect(closed.code).toBe(CloseCodes.RATE_LIMITED);
    expect(closed.reason).toMatch(/rate/i);
    const kinds = abuser.messages.map((m) => (m.type === 'error' ? `error:${String(m.code)}` : m.type));
    expect(kinds).toEqual(['pong', 'pong', 'pong', 'pong', 'pong', `error:${ProtocolErrors.RATE_LIMITED}`]);
    await stillReceives(f, polite);
  });

  it('a client that slows down after the warning is not closed', async () => {
    const f = await startFixture({ server: { messagesPerSecond: 5, messageBurst: 5 } });
    const client = await f.client();
    for (let i = 0; i < 6; i++) client.send({ type: 'ping', id: i });
    await client.waitFor((m) => m.type === 'error' && m.code === ProtocolErrors.RATE_LIMITED, 'rate_limited');
    // At 5 a second, a second of quiet refills the bucket (waiting longer only helps).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    await client.subscribe({ pipeline_id: 'alpha' });
    await stillReceives(f, client);
  });
});

describe('maxPayload', () => {
  it('an oversized frame closes that connection only (1009); the others keep receiving', async () => {
    const f = await startFixture({ server: { maxPayload: 1024 } });
    const good = await f.client();
    await good.subscribe({ pipeline_id: 'alpha' });
    const big = await f.client();
    await big.subscribe({ pipeline_id: 'alpha' });
    // Just under the limit is fine (answered with an error: it is not a valid message).
    big.sendRaw(JSON.stringify({ type: 'ping', id: 'x'.repeat(1000) }).slice(0, 1024));
    await big.waitFor((m) => m.type === 'error', 'the error for a frame under the limit');
    big.sendRaw(JSON.stringify({ type: 'subscribe', pipeline_id: 'p'.repeat(2000) }));
    expect((await big.waitForClose()).code).toBe(1009);
    await stillReceives(f, good);
    expect(f.server.connections).toBe(1);
  });
});

describe('1,000 malformed, oversized and binary frames', () => {
  it('leave the server and a good client working: the good client gets every event of a run that goes on meanwhile', async () => {
    const f = await startFixture({ server: { maxPayload: 4096, messagesPerSecond: 100_000, messageBurst: 100_000 } });
    const good = await f.client();
    await good.subscribe({ pipeline_id: 'gated' });
    const run = await f.startGated({ key: 'k', phases: [50, 50, 50] });
    const small: (string | Buffer)[] = [
      'garbage',
      '{"type":"subscribe"',
      '[1,2,3]',
      '{"type":"subscribe"}',
      '{"type":"subscribe","pipeline_id":"gated","run_id":"x"}',
      '{"type":"subscribe","pipeline_id":"gated","extra":true}',
      '{"type":"unsubscribe","pipeline_id":"gated"}',
      '{"type":"subscribe","run_id":"r","since":-5}',
      '{"type":"nope"}',
      '',
      randomBytes(64),
      Buffer.from([0xff, 0xfe, 0xfd]),
    ];
    const oversized: (string | Buffer)[] = ['x'.repeat(8192), randomBytes(10_000)];
    let sent = 0;
    let answered = 0;
    let closedForSize = 0;
    /** One bad client: batches of 49 small bad frames and one oversized frame, reconnecting after each close. */
    const attacker = async (batches: number): Promise<void> => {
      for (let b = 0; b < batches; b++) {
        const bad = await connect(f.server.url);
        for (let i = 0; i < 49; i++) {
          const frame = small[(b * 49 + i) % small.length] as string | Buffer;
          bad.sendRaw(frame, Buffer.isBuffer(frame));
          sent++;
        }
        await bad.waitUntil(() => bad.controls('error').length === 49, 'an error for each bad frame');
        answered += bad.controls('error').length;
        const huge = oversized[b % oversized.length] as string | Buffer;
        bad.sendRaw(huge, Buffer.isBuffer(huge));
        sent++;
        if ((await bad.waitForClose()).code === 1009) closedForSize++;
      }
    };
    const barrage = Promise.all(Array.from({ length: 5 }, () => attacker(4)));
    f.open('k', 0);
    await logHolds(f, run.runId, 2 + 100);
    f.open('k', 1);
    await barrage;
    expect(sent).toBe(1000);
    expect(answered).toBe(980);
    expect(closedForSize).toBe(20);
    await run.waitResult({ timeoutMs: 10_000 });
    await good.waitForEnd(run.runId);
    expect(good.events(run.runId)).toEqual(await f.log(run.runId));
    expect(good.controls('error')).toEqual([]);
    // The server still serves: health, a new subscriber, the good client.
    const health = await fetch(`${f.server.httpUrl}/health`);
    expect(health.status).toBe(200);
    await waitUntil(() => f.server.connections === 1, 'the bad connections to be gone');
    const fresh = await f.client();
    await fresh.subscribe({ pipeline_id: 'alpha' });
    await good.subscribe({ pipeline_id: 'alpha' });
    await stillReceives(f, fresh);
  });
});

describe('heartbeat', () => {
  /** A raw TCP peer that completes the WebSocket handshake, then never answers a ping. Keeps the opcodes of the frames it gets. */
  async function deadPeer(port: number): Promise<{ socket: Socket; opcodes: number[]; closeCode: () => number | null; ended: Promise<void> }> {
    const socket = netConnect(port, '127.0.0.1');
    onCleanup(() => void socket.destroy());
    const key = randomBytes(16).toString('base64');
    socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    const opcodes: number[] = [];
    let closeCode: number | null = null;
    let onUpgrade: () => void = () => undefined;
    const upgradedP = new Promise<void>((resolve) => (onUpgrade = resolve));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        expect(buffer.subarray(0, end).toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
        buffer = buffer.subarray(end + 4);
        upgraded = true;
        onUpgrade();
      }
      // Server frames are unmasked; control frames are short (length < 126).
      while (buffer.length >= 2) {
        const opcode = (buffer[0] as number) & 0x0f;
        const length = (buffer[1] as number) & 0x7f;
        if (length >= 126 || buffer.length < 2 + length) break;
        opcodes.push(opcode);
        if (opcode === 0x8 && length >= 2) closeCode = buffer.readUInt16BE(2);
        buffer = buffer.subarray(2 + length);
      }
    });
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await upgradedP;
    return { socket, opcodes, closeCode: () => closeCode, ended };
  }

  it('drops a peer that completed the handshake but never answers pings (4002); a live client is kept', async () => {
    const f = await startFixture({ server: { heartbeatMs: 250 } });
    const live = await f.client();
    await live.subscribe({ pipeline_id: 'alpha' });
    const dead = await deadPeer(f.server.port);
    await waitUntil(() => f.server.connections === 2, 'two connections');
    await dead.ended;
    expect(dead.opcodes).toContain(0x9);
    expect(dead.closeCode()).toBe(CloseCodes.HEARTBEAT_TIMEOUT);
    await waitUntil(() => f.server.connections === 1, 'the dead peer to be gone');
    // The live client answered every ping meanwhile (ws does it by itself) and is still here.
    await stillReceives(f, live);
  });
});

describe('slow consumer', () => {
  it('a client that stops reading is closed 4008 past the hard limit while a normal client gets everything; reconnecting with since recovers exactly what it missed', { timeout: 60_000 }, async () => {
    const f = await startFixture({ server: { heartbeatMs: 0, outgoing: { softLimitBytes: 64 * 1024, hardLimitBytes: 256 * 1024 } } });
    const line = 'y'.repeat(4000);
    // It yields every few lines, as real work does: the server, both clients and the task share this process.
    const firehose = f.broker.task('firehose', async (n: number, ctx) => {
      for (let i = 0; i < n; i++) {
        ctx.log(`${i} ${line}`);
        if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
      }
      return n;
    });
    const pipeline = new Pipeline(f.broker, { id: 'firehose' }).callNext(firehose).withTracking(f.tracking);
    const normal = await f.client();
    await normal.subscribe({ pipeline_id: 'firehose' });
    const slow = await f.client();
    await slow.subscribe({ pipeline_id: 'firehose' });
    slow.pause();
    // 4 runs of 1,000 lines of 4 KB: 16 MB, far past the hard limit and what the kernel buffers hold.
    const runs: RunHandle<number>[] = [];
    for (let i = 0; i < 4; i++) runs.push(await pipeline.kiq(1000));
    await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 30_000 })));
    const runIds = runs.map((r) => r.runId);
    for (const runId of runIds) {
      await normal.waitForEnd(runId, 30_000);
      expect(normal.events(runId)).toEqual(await f.log(runId));
    }
    expect(normal.closeInfo).toBeNull();
    slow.resume();
    const closed = await slow.waitForClose(30_000);
    expect(closed.code).toBe(CloseCodes.SLOW_CONSUMER);
    expect(closed.reason).toMatch(/since/);
    // What it got before the close has no gap: a prefix of each run.
    const cut: Record<string, number> = {};
    for (const runId of runIds) {
      const got = seqs(slow.events(runId));
      expect(got).toEqual(got.map((_, i) => i + 1));
      cut[runId] = got.length;
    }
    expect(Object.values(cut).reduce((a, b) => a + b, 0)).toBeLessThan(runIds.length * 1003);
    const again = await f.client();
    for (const runId of runIds) await again.subscribe({ run_id: runId, since: cut[runId] ?? 0 });
    await again.waitUntil(() => again.controls('replay_complete').length === runIds.length, 'the replays', 30_000);
    for (const runId of runIds) {
      expect([...slow.events(runId), ...again.events(runId)]).toEqual(await f.log(runId));
    }
    // The normal client kept its connection and still receives.
    await normal.subscribe({ pipeline_id: 'alpha' });
    await stillReceives(f, normal);
  });
});

describe('TLS', () => {
  const hasOpenssl = spawnSync('which', ['openssl']).status === 0;

  it.skipIf(!hasOpenssl)('tls: { cert, key } serves wss:// and https:// on one port (self-signed certificate made with openssl)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-tls-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { stdio: 'ignore' },
    );
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    const f = await startFixture({ server: { tls: { cert, key } } });
    expect(f.server.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    expect(f.server.httpUrl).toMatch(/^https:\/\//);
    // Verified against the certificate as CA: a real chain check, not rejectUnauthorized: false.
    const client = await f.client({ ws: { ca: cert } });
    await client.subscribe({ pipeline_id: 'alpha' });
    await stillReceives(f, client);
    const health = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      httpsGet(`${f.server.httpUrl}/health`, { ca: cert }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject);
    });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'healthy' });
    // A client that does not trust the certificate is refused by its own TLS check.
    await expect(connect(f.server.url)).rejects.toThrow(/self-signed|self signed|certificate/i);
    // Plain ws:// to the TLS port does not get a WebSocket.
    await expect(connect(f.server.url.replace('wss://', 'ws://'), {}, 5_000)).rejects.toThrow();
    expect(isEvent({ type: 'x' })).toBe(false);
  });
});
