/**
 * Everything a client can make the server hold is bounded (issue 12 items 4-8): idle
 * sockets against a server with a low descriptor limit, connection caps per address
 * (behind a proxy too), SSE under the WebSocket's rules, stalled replayers' memory, rate
 * limits keyed by the real client, and inputs whose errors never echo them back whole.
 * The servers that are measured (descriptors, memory) run in a process of their own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerOptions } from '../src/server/index.js';
import { waitUntil } from './helpers/collect.js';
import { raw } from './helpers/http.js';
import { startFixture } from './helpers/server-fixture.js';
import { connect, connectRejected, type TestClient } from './helpers/ws-client.js';

const children: ChildProcess[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

interface ServerProcess {
  port: number;
  pid: number;
  runId: string | null;
  url: string;
  httpUrl: string;
  /** Resident memory of the server process, in bytes. */
  rss(): number;
}

/** A server in its own process (test/fixtures/security/server.ts), with `ulimit -n nofile` when given. */
async function serverProcess(options: Partial<ServerOptions> & { backlog?: number; lineBytes?: number }, nofile?: number): Promise<ServerProcess> {
  const node = `exec ${JSON.stringify(process.execPath)} --expose-gc --import tsx test/fixtures/security/server.ts ${shellQuote(JSON.stringify(options))}`;
  const child = spawn('bash', ['-c', nofile === undefined ? node : `ulimit -n ${nofile} && ${node}`], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the server process exited ${code}: ${stderr}`)));
  });
  const { port, pid, runId } = JSON.parse(line) as { port: number; pid: number; runId: string | null };
  return {
    port,
    pid,
    runId,
    url: `ws://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${port}`,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024,
  };
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Opens `n` TCP connections that never send a byte; resolves once each is connected or refused. */
async function idleSockets(port: number, n: number, localAddress = '127.0.0.1'): Promise<Socket[]> {
  const opened: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = tcpConnect({ port, host: '127.0.0.1', localAddress });
    s.on('error', () => undefined);
    // Reading sends nothing; it lets this side see the server close the socket.
    s.resume();
    sockets.push(s);
    opened.push(s);
    await new Promise<void>((resolve) => {
      s.once('connect', () => resolve());
      s.once('close', () => resolve());
    });
  }
  return opened;
}

describe('idle sockets', () => {
  it('against a server with `ulimit -n 256`: the cap (limit minus 64) answers 503 instead of running out of descriptors, the idle ones are closed after handshakeTimeoutMs (default 10 s), and a real client gets in', { timeout: 60_000 }, async () => {
    const server = await serverProcess({ maxConnectionsPerAddress: 10_000 }, 256);
    const idle = await idleSockets(server.port, 400);
    const closed = (): number => idle.filter((s) => s.destroyed || s.readyState === 'closed').length;
    // 192 are held; the server answers or resets the other 208 at once (a refused socket lingers a second at most).
    await waitUntil(() => closed() >= 400 - 192, 'the sockets past the cap to be refused', 10_000);
    // At most a few more (descriptors tsx and the test harness hold in that process), never the hundreds past the limit.
    expect(closed()).toBe(400 - 192);
    // The real client, from another address, while 192 idle sockets fill the server: a clear 503.
    const full = await raw(server.httpUrl, '/health', { localAddress: '127.0.0.2' });
    expect(full.status).toBe(503);
    expect(full.error?.code).toBe('server_full');
    // The idle ones are closed by the server; then the real client is served.
    await waitUntil(() => idle.every((s) => s.destroyed || s.readyState === 'closed'), 'the server to close every idle socket', 20_000);
    const ok = await raw(server.httpUrl, '/health', { localAddress: '127.0.0.2' });
    expect(ok.status).toBe(200);
    const ws = await connect(server.url, { ws: { localAddress: '127.0.0.2' } });
    await ws.subscribe({ pipeline_id: '*' });
    await ws.close();
  });

  it('a slowloris client (headers a byte at a time, never finished) is closed after handshakeTimeoutMs', { timeout: 20_000 }, async () => {
    const f = await startFixture({ server: { handshakeTimeoutMs: 800 } });
    const s = tcpConnect({ port: f.server.port, host: '127.0.0.1' });
    sockets.push(s);
    s.on('error', () => undefined);
    await new Promise((resolve) => s.once('connect', resolve));
    s.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const drip = setInterval(() => s.write('X'), 200);
    await new Promise((resolve) => s.once('close', resolve));
    clearInterval(drip);
    expect(f.server.sockets.handshakeTimeouts).toBe(1);
  });

  it('one address holds at most maxConnectionsPerAddress (429 past it) while another address is served', { timeout: 30_000 }, async () => {
    const f = await startFixture({ server: { maxConnectionsPerAddress: 20 } });
    await idleSockets(f.server.port, 20);
    const refused = await raw(f.server.httpUrl, '/health');
    expect(refused.status).toBe(429);
    expect(refused.error?.code).toBe('too_many_connections');
    expect(await connectRejected(f.server.url)).toBe(429);
    expect((await raw(f.server.httpUrl, '/health', { localAddress: '127.0.0.2' })).status).toBe(200);
    const ws = await connect(f.server.url, { ws: { localAddress: '127.0.0.2' } });
    await ws.subscribe({ pipeline_id: '*' });
    // An operator sees it on /metrics.
    const metrics = (await raw(f.server.httpUrl, '/metrics', { localAddress: '127.0.0.3' })).text;
    expect(metrics).toMatch(/^flowcast_connections_refused_total\{reason="per_address"\} 2$/m);
    expect(metrics).toMatch(/^flowcast_tcp_connections (2[2-9]|3\d)$/m);
  });
});

describe('SSE under the WebSocket rules', () => {
  it('counts against the per-address cap, and behind a trusted proxy streams are counted per forwarded client', async () => {
    const f = await startFixture({ server: { maxConnectionsPerAddress: 3 } });
    for (let i = 0; i < 3; i++) sockets.push(await sseStream(f.server.httpUrl, '/api/events?pipeline_id=*'));
    expect((await raw(f.server.httpUrl, '/api/events?pipeline_id=*')).status).toBe(429);
    const proxied = await startFixture({ server: { maxConnectionsPerAddress: 3, trustProxy: 'loopback' } });
    const from = (client: string): Record<string, string> => ({ 'x-forwarded-for': client });
    for (let i = 0; i < 3; i++) sockets.push(await sseStream(proxied.server.httpUrl, '/api/events?pipeline_id=*', from('10.0.0.1')));
    const over = await raw(proxied.server.httpUrl, '/api/events?pipeline_id=*', { headers: from('10.0.0.1') });
    expect(over.status).toBe(429);
    expect(await connectRejected(proxied.server.url, { ws: { headers: from('10.0.0.1') } })).toBe(429);
    expect((await raw(proxied.server.httpUrl, '/api/events?pipeline_id=*', { headers: from('10.0.0.2') })).status).toBe(200);
    const ws = await connect(proxied.server.url, { ws: { headers: from('10.0.0.3') } });
    await ws.subscribe({ pipeline_id: '*' });
  });

  it('is rate limited like the REST API', async () => {
    const f = await startFixture({ server: { restRateLimit: { requestsPerSecond: 0.1, burst: 2 } } });
    expect((await raw(f.server.httpUrl, '/api/events?pipeline_id=*')).status).toBe(200);
    expect((await raw(f.server.httpUrl, '/api/events?pipeline_id=*')).status).toBe(200);
    const limited = await raw(f.server.httpUrl, '/api/events?pipeline_id=*');
    expect(limited.status).toBe(429);
    expect(limited.error?.code).toBe('rate_limited');
    expect(limited.headers['retry-after']).toMatch(/^\d+$/);
  });

  it.each([
    ['an unknown parameter', '/api/events?pipeline_id=*&bogus=1', /bogus/],
    ['a negative since', '/api/events?run_id=r1&since=-1', /since/],
    ['a since that is not a number', '/api/events?run_id=r1&since=abc', /since/],
    ['an id with characters no id has', '/api/events?run_id=a%20b', /run_id/],
    ['an unknown event type', '/api/events?pipeline_id=*&event_types=Bogus', /event type/],
    ['both pipeline_id and run_id', '/api/events?pipeline_id=*&run_id=r1', /exactly one/],
    ['a 10 KB id', `/api/events?run_id=${'a'.repeat(10_000)}`, /run_id/],
  ])('answers 400 bad_request for %s, as the REST API does', async (_what, path, message) => {
    const f = await startFixture();
    const answer = await raw(f.server.httpUrl, path);
    expect(answer.status).toBe(400);
    expect(answer.error?.code).toBe('bad_request');
    expect(answer.error?.message).toMatch(message);
    expect(answer.text.length).toBeLessThan(600);
  });

  it('answers 400 for a Last-Event-ID the server never sent', async () => {
    const f = await startFixture();
    const answer = await raw(f.server.httpUrl, '/api/events?pipeline_id=*', { headers: { 'last-event-id': 'garbage' } });
    expect(answer.status).toBe(400);
    expect(answer.error?.message).toContain('Last-Event-ID');
  });
});

/** Opens an SSE stream and resolves once its head arrived; the socket stays open until the test ends. */
function sseStream(base: string, path: string, headers: Record<string, string> = {}): Promise<Socket> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ port: Number(url.port), host: url.hostname });
    s.on('error', reject);
    s.once('connect', () => {
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      s.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n${extra}\r\n`);
    });
    s.once('data', (chunk: Buffer) => {
      if (chunk.toString().startsWith('HTTP/1.1 200')) resolve(s);
      else reject(new Error(`SSE refused: ${chunk.toString().split('\r\n')[0]}`));
    });
  });
}

describe('stalled replayers', () => {
  it('150 clients that ask for a 9,000-event replay and never read hold at most N × the outgoing hard limit plus a constant', { timeout: 120_000 }, async () => {
    const hard = 256 * 1024;
    const server = await serverProcess({ backlog: 9_000, outgoing: { softLimitBytes: 64 * 1024, hardLimitBytes: hard }, maxConnectionsPerAddress: 1000 });
    const before = server.rss();
    const clients: TestClient[] = [];
    for (let i = 0; i < 150; i++) {
      const c = await connect(server.url);
      c.pause();
      c.send({ type: 'subscribe', run_id: server.runId, since: 0 });
      clients.push(c);
    }
    // Let every replay go as far as it can (no assertion on time: only on memory).
    let last = 0;
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const now = server.rss();
      if (Math.abs(now - last) < 2 * 1024 * 1024 && i > 3) break;
      last = now;
    }
    process.kill(server.pid, 'SIGUSR2');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const grown = server.rss() - before;
    const bound = clients.length * hard + 64 * 1024 * 1024;
    expect(grown, `the server grew by ${Math.round(grown / 1048576)} MiB for ${clients.length} stalled replayers`).toBeLessThanOrEqual(bound);
    // A stalled client that reads again gets the whole backlog, in order.
    const one = clients[0] as TestClient;
    one.resume();
    await one.waitUntil(() => one.controls('replay_complete').length === 1, 'the replay to complete', 60_000);
    const seqList = one.events(server.runId as string).map((e) => e.seq);
    expect(seqList).toEqual(seqList.map((_, i) => i + 1));
    expect(seqList.length).toBeGreaterThan(9000);
    for (const c of clients) c.ws.terminate();
  });
});

describe('rate limits keyed by the real client', () => {
  it('behind a trusted proxy each forwarded client has its own bucket; without trustProxy X-Forwarded-For changes nothing', async () => {
    const limit = { requestsPerSecond: 0.1, burst: 2 };
    const proxied = await startFixture({ server: { trustProxy: 'loopback', restRateLimit: limit } });
    const as = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip });
    expect((await raw(proxied.server.httpUrl, '/api/runs', { headers: as('10.0.0.1') })).status).toBe(200);
    expect((await raw(proxied.server.httpUrl, '/api/runs', { headers: as('10.0.0.1') })).status).toBe(200);
    const over = await raw(proxied.server.httpUrl, '/api/runs', { headers: as('10.0.0.1') });
    expect(over.status).toBe(429);
    expect(over.error?.message).toContain('10.0.0.1');
    expect((await raw(proxied.server.httpUrl, '/api/runs', { headers: as('10.0.0.2') })).status).toBe(200);
    const direct = await startFixture({ server: { restRateLimit: limit } });
    expect((await raw(direct.server.httpUrl, '/api/runs', { headers: as('10.0.0.1') })).status).toBe(200);
    expect((await raw(direct.server.httpUrl, '/api/runs', { headers: as('10.0.0.2') })).status).toBe(200);
    expect((await raw(direct.server.httpUrl, '/api/runs', { headers: as('10.0.0.3') })).status).toBe(429);
  });
});

describe('bounded inputs and echoes', () => {
  it('a cancel body nested 5,000 deep answers 400 (not 500), and a 1 MB reason 413; the run keeps running', async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'deep', phases: [1, 1] });
    const nested = `{"reason":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const deep = await raw(f.server.httpUrl, `/api/runs/${run.runId}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: nested });
    expect(deep.status).toBe(400);
    expect(deep.error?.message).toMatch(/nested deeper than 32/);
    const huge = await raw(f.server.httpUrl, `/api/runs/${run.runId}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'r'.repeat(1024 * 1024) }) });
    expect(huge.status).toBe(413);
    expect(huge.text.length).toBeLessThan(600);
    expect((await f.tracking.getStatus(run.runId))?.status).toBe('RUNNING');
  });

  it('errors quote at most a short prefix of what was sent: a 12 KB id, a 10 KB query value, a deep WebSocket message', async () => {
    const f = await startFixture({ server: { maxPayload: 256 * 1024 } });
    const longId = await raw(f.server.httpUrl, `/api/runs/${'a'.repeat(12 * 1024)}`);
    expect(longId.status).toBeGreaterThanOrEqual(400);
    expect(longId.status).toBeLessThan(500);
    expect(longId.text.length).toBeLessThan(600);
    const longQuery = await raw(f.server.httpUrl, `/api/runs?status=${'X'.repeat(10_000)}`);
    expect(longQuery.status).toBe(400);
    expect(longQuery.text.length).toBeLessThan(600);
    const ws = await f.client();
    ws.ws.send(`{"type":"subscribe","pipeline_id":"alpha","id":"x","extra":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    await ws.waitUntil(() => ws.controls('error').length === 1, 'the error');
    const reply = ws.controls('error')[0]!;
    expect(reply).toMatchObject({ type: 'error', code: 'bad_message' });
    expect(String(reply.message)).toMatch(/nested deeper/);
    const big = await ws.request({ type: 'subscribe', pipeline_id: 'x'.repeat(100_000), id: 'y' });
    expect(JSON.stringify(big).length).toBeLessThan(600);
    await ws.subscribe({ pipeline_id: 'alpha' });
  });
});
