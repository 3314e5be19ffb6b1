/**
 * The attacks of issue 12 ("What was measured", items 1-8), run against the server of a
 * checkout exactly as a user starts it: `node --import tsx <root>/src/cli/main.ts serve
 * --demo --port 0 ...flags` as a child process (item 4 under `bash -c 'ulimit -n 1024 &&
 * exec ...'`), its port read from the banner. Prints one line per item with the measured
 * figures, so the same script measures the code before and after the fixes:
 *
 *   node --import tsx bench/attack-report.ts --root /work/wt-old
 *   node --import tsx bench/attack-report.ts --root .
 *
 * Options: `--root <dir>` (default: this checkout), `--items 1,4` (default: all).
 * A flag the checkout's CLI does not know (it exits 2 with "unknown option") is dropped and
 * the attack runs without it; the line says so. Every loop is bounded, all traffic goes to
 * 127.0.0.1 / 127.0.0.2, and only the server processes this script started are killed
 * (by pid). Each item takes under ~30 s. Numbers on a shared machine are approximate.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import WebSocket from 'ws';

const { values: args } = parseArgs({
  options: {
    root: { type: 'string', default: fileURLToPath(new URL('..', import.meta.url)) },
    items: { type: 'string', default: '1,2,3,4,5,6,7,8' },
  },
});
const ROOT = resolvePath(args.root);
const ITEMS = new Set(args.items.split(',').map((s) => Number(s.trim())));
const SECRET = 'attack-report-secret-0123456789abcdef0123456789';
const EVIL = 'http://evil.example';
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The server under attack

interface Flag {
  name: string;
  value?: string;
}

interface Server {
  port: number;
  pid: number;
  http: string;
  ws: string;
  /** Flags the checkout's CLI refused ("unknown option"); the server runs without them. */
  dropped: string[];
  /** Resident memory of the server process, in bytes. */
  rss(): number;
  stop(): Promise<void>;
}

const started = new Map<number, ChildProcess>();

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Starts `flowcast serve --demo --port 0 <flags>` from ROOT; drops flags the CLI does not know. */
async function startServer(flags: Flag[], options: { ulimit?: number } = {}): Promise<Server> {
  let remaining = [...flags];
  const dropped: string[] = [];
  for (let attempt = 0; attempt <= flags.length; attempt++) {
    const argv = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--demo', '--port', '0', ...remaining.flatMap((f) => (f.value === undefined ? [f.name] : [f.name, f.value]))];
    const env = { ...process.env, FLOWCAST_TOKEN: undefined, FLOWCAST_JWT_SECRET: undefined, FLOWCAST_REDIS_URL: undefined, FLOWCAST_KEY_PREFIX: undefined, FORCE_COLOR: undefined, NO_COLOR: '1' };
    const child =
      options.ulimit === undefined
        ? spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('bash', ['-c', `ulimit -n ${options.ulimit} && exec ${[process.execPath, ...argv].map(shellQuote).join(' ')}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) throw new Error('could not start the server process');
    const pid = child.pid;
    started.set(pid, child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += stdout.length < 64 * 1024 ? c : ''));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += stderr.length < 64 * 1024 ? c : ''));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.once('exit', () => started.delete(pid));
    const outcome = await Promise.race([
      (async () => {
        for (let i = 0; i < 600; i++) {
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(stdout);
          if (m !== null) return { port: Number(m[1]) };
          await sleep(50);
        }
        return { timeout: true as const };
      })(),
      exited.then((code) => ({ exit: code })),
    ]);
    if ('port' in outcome) {
      const port = outcome.port;
      return {
        port,
        pid,
        http: `http://127.0.0.1:${port}`,
        ws: `ws://127.0.0.1:${port}/ws`,
        dropped,
        rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024,
        stop: () => stopProcess(pid),
      };
    }
    if ('timeout' in outcome) {
      await stopProcess(pid);
      throw new Error(`the server printed no banner within 30 s; stderr: ${stderr.slice(0, 300)}`);
    }
    const unknown = /unknown option '(--[\w-]+)'/.exec(stderr);
    const name = unknown?.[1];
    if (name === undefined || !remaining.some((f) => f.name === name)) throw new Error(`the server exited ${outcome.exit}: ${stderr.trim().slice(0, 300)}`);
    dropped.push(name);
    remaining = remaining.filter((f) => f.name !== name);
  }
  throw new Error('unreachable');
}

/** SIGTERM, then SIGKILL after 5 s, of a process this script started. */
async function stopProcess(pid: number): Promise<void> {
  const child = started.get(pid);
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
  }, 5000);
  await gone;
  clearTimeout(timer);
}

function killAllStarted(): void {
  for (const [pid, child] of started) if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
}
process.on('SIGINT', () => {
  killAllStarted();
  process.exit(130);
});

// ---------------------------------------------------------------------------------------
// Clients

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** Bytes of the reply body. */
  bytes: number;
}
type Reply = Answer | { error: string };

/** One HTTP request (a new connection, `Connection: close`); an SSE answer resolves at its head. */
function http(base: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string; timeoutMs?: number } = {}): Promise<Reply> {
  const url = new URL(path, base);
  return new Promise<Reply>((resolve) => {
    let settled = false;
    const done = (r: Reply): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: o.method ?? 'GET',
        agent: false,
        headers: { connection: 'close', ...(o.body !== undefined && { 'content-length': String(Buffer.byteLength(o.body)) }), ...o.headers },
        ...(o.localAddress !== undefined && { localAddress: o.localAddress }),
        timeout: o.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        const finish = (): void => {
          const body = Buffer.concat(chunks);
          done({ status: res.statusCode ?? 0, headers: res.headers, text: body.toString('utf8'), bytes });
        };
        if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
          finish();
          req.destroy();
          return;
        }
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes <= 2 * MiB) chunks.push(c);
        });
        res.on('end', finish);
        res.on('error', (e) => done({ error: errorName(e) }));
      },
    );
    req.on('timeout', () => {
      done({ error: `no answer in ${(o.timeoutMs ?? 10_000) / 1000} s` });
      req.destroy();
    });
    req.on('error', (e) => done({ error: errorName(e) }));
    req.end(o.body);
  });
}

function errorName(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ?? err.message;
}

/** `403 forbidden_origin` / `ECONNRESET`. */
function show(r: Reply): string {
  if ('error' in r) return r.error;
  const code = /"code"\s*:\s*"([\w-]+)"/.exec(r.text)?.[1];
  return code === undefined ? String(r.status) : `${r.status} ${code}`;
}

function json<T>(r: Reply): T | null {
  if ('error' in r || r.status !== 200) return null;
  try {
    return JSON.parse(r.text) as T;
  } catch {
    return null;
  }
}

type WsOutcome = { open: WebSocket } | { status: number } | { close: number } | { error: string };

/** Opens a WebSocket; resolves when it is open, refused (HTTP status), closed before open, or after `timeoutMs`. */
function openWs(url: string, o: { headers?: Record<string, string>; localAddress?: string; timeoutMs?: number } = {}): Promise<WsOutcome> {
  return new Promise<WsOutcome>((resolve) => {
    const ws = new WebSocket(url, { headers: o.headers, localAddress: o.localAddress, handshakeTimeout: o.timeoutMs ?? 5000 });
    let settled = false;
    const done = (r: WsOutcome): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    ws.once('open', () => done({ open: ws }));
    ws.once('unexpected-response', (req, res) => {
      done({ status: res.statusCode ?? 0 });
      res.resume();
      req.destroy();
    });
    ws.once('close', (code) => done({ close: code }));
    ws.on('error', (e) => done({ error: errorName(e) }));
  });
}

interface Event {
  seq: number;
  run_id: string;
  pipeline_id: string;
}
function asEvent(data: WebSocket.RawData): Event | null {
  try {
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)).toString('utf8');
    const m = JSON.parse(text) as Partial<Event>;
    return typeof m.seq === 'number' && typeof m.run_id === 'string' ? (m as Event) : null;
  } catch {
    return null;
  }
}

function jwt(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setSubject('attacker').setExpirationTime('1h').sign(Buffer.from(SECRET));
}

interface RunRow {
  run_id: string;
  pipeline_id: string;
  status: string;
}

async function listRuns(s: Server, query: string, headers: Record<string, string> = {}, localAddress?: string): Promise<RunRow[]> {
  const r = await http(s.http, `/api/runs?${query}`, { headers, ...(localAddress !== undefined && { localAddress }) });
  return json<{ runs: RunRow[] }>(r)?.runs ?? [];
}

/** A run that is RUNNING now (waits up to 8 s for one). */
async function runningRun(s: Server, headers: Record<string, string> = {}): Promise<RunRow | null> {
  for (let i = 0; i < 16; i++) {
    const runs = await listRuns(s, 'status=RUNNING&limit=20', headers);
    // A demo_workflow run lasts longest (several seconds).
    const run = runs.find((r) => r.pipeline_id === 'demo_workflow') ?? runs[0];
    if (run !== undefined) return run;
    await sleep(500);
  }
  return null;
}

function dropNote(s: Server): string {
  return s.dropped.length === 0 ? '' : ` [this CLI has no ${s.dropped.join(', ')}: run without it]`;
}

function countBy(values: string[]): string {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m].map(([k, n]) => `${k} ×${n}`).join(', ') || 'none';
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

// ---------------------------------------------------------------------------------------
// The attacks

/** 1. Malformed JWT `pipelines` claims and no claim: what is read of the other pipelines. */
async function item1(): Promise<string> {
  const s = await startServer([{ name: '--jwt-secret', value: SECRET }]);
  try {
    await sleep(500);
    const cases: [string, Record<string, unknown>][] = [
      ['"demo_workflow"', { pipelines: 'demo_workflow' }],
      ['[1,2]', { pipelines: [1, 2] }],
      ['{}', { pipelines: {} }],
      ['null', { pipelines: null }],
      ['no claim', {}],
      ['control ["demo_workflow"]', { pipelines: ['demo_workflow'] }],
    ];
    const results = await Promise.all(
      cases.map(async ([label, claims]) => {
        const token = await jwt(claims);
        let others = 0;
        let own = 0;
        const closed: { code: number | null } = { code: null };
        const opened = await openWs(`${s.ws}?token=${encodeURIComponent(token)}`);
        let ws: string;
        if ('open' in opened) {
          opened.open.on('message', (data) => {
            const e = asEvent(data);
            if (e === null) return;
            if (e.pipeline_id === 'demo_workflow') own++;
            else others++;
          });
          opened.open.on('close', (code) => (closed.code = code));
          opened.open.send(JSON.stringify({ type: 'subscribe', pipeline_id: '*', id: 'all' }));
        }
        await sleep(5000);
        if ('open' in opened) {
          ws = closed.code === null ? 'open' : `close ${closed.code}`;
          opened.open.terminate();
        } else ws = 'status' in opened ? `upgrade ${opened.status}` : 'close' in opened ? `close ${opened.close}` : opened.error;
        const rest = await http(s.http, '/api/runs?limit=1000', { headers: { authorization: `Bearer ${token}` } });
        const runs = json<{ runs: RunRow[] }>(rest)?.runs ?? [];
        const otherRuns = runs.filter((r) => r.pipeline_id !== 'demo_workflow').length;
        return { label, ws, others, own, rest: show(rest), otherRuns, ownRuns: runs.length - otherRuns };
      }),
    );
    const parts = results.map((r) =>
      r.label.startsWith('control')
        ? `${r.label}: ${r.own} events + ${r.ownRuns} runs of its own pipeline, ${r.others + r.otherRuns} of others`
        : `${r.label}: ${r.others + r.otherRuns} (WS ${r.ws}, ${r.others} events; REST ${r.rest}, ${r.otherRuns} runs)`,
    );
    const attack = results.filter((r) => !r.label.startsWith('control')).reduce((n, r) => n + r.others + r.otherRuns, 0);
    return `1. JWT pipelines claim, events + run records of pipelines other than demo_workflow read over WS (subscribe "*") and REST in 5 s: total ${attack} — ${parts.join('; ')}${dropNote(s)}`;
  } finally {
    await s.stop();
  }
}

/** 2. The open server from another site: WS with a foreign Origin, CSRF cancel/retry, DNS rebinding. */
async function item2(): Promise<string> {
  const s = await startServer([]);
  try {
    await sleep(500);
    const opened = await openWs(s.ws, { headers: { origin: EVIL } });
    let wsPart: string;
    if ('open' in opened) {
      let events = 0;
      opened.open.on('message', (data) => {
        if (asEvent(data) !== null) events++;
      });
      opened.open.send(JSON.stringify({ type: 'subscribe', pipeline_id: '*', id: 'all' }));
      await sleep(3000);
      opened.open.terminate();
      wsPart = `accepted, ${events} events streamed in 3 s`;
    } else wsPart = `refused (${'status' in opened ? opened.status : 'close' in opened ? `close ${opened.close}` : opened.error}), 0 events`;

    const run = await runningRun(s);
    let cancelPart = 'no running run found';
    if (run !== null) {
      const cancel = await http(s.http, `/api/runs/${run.run_id}/cancel`, { method: 'POST', headers: { origin: EVIL } });
      await sleep(300);
      const after = json<{ status: string }>(await http(s.http, `/api/runs/${run.run_id}`))?.status ?? '?';
      cancelPart = `${show(cancel)} (the run is then ${after})`;
    }
    let ended: RunRow | undefined;
    for (let i = 0; i < 16 && ended === undefined; i++) {
      ended = (await listRuns(s, 'limit=50')).find((r) => r.status === 'COMPLETED' || r.status === 'FAILED');
      if (ended === undefined) await sleep(500);
    }
    let retryPart = 'no ended run found';
    if (ended !== undefined) retryPart = show(await http(s.http, `/api/runs/${ended.run_id}/retry`, { method: 'POST', headers: { origin: EVIL } }));
    const rebound = await http(s.http, '/api/runs', { headers: { host: `evil.example:${s.port}` } });
    return `2. no token, Origin ${EVIL}: WS upgrade ${wsPart}; simple POST /api/runs/{id}/cancel (no body) ${cancelPart}; POST .../retry ${retryPart}; GET /api/runs with Host: evil.example ${show(rebound)}${dropNote(s)}`;
  } finally {
    await s.stop();
  }
}

/** 3. CORS preflight from an allowed origin. */
async function item3(): Promise<string> {
  const APP = 'http://app.example';
  const s = await startServer([{ name: '--allowed-origin', value: APP }]);
  try {
    const pre = await http(s.http, '/api/runs', { method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    const get = await http(s.http, '/api/runs?limit=1', { headers: { origin: APP } });
    const acao = (r: Reply): string => ('error' in r ? '-' : String(r.headers['access-control-allow-origin'] ?? '(none)'));
    return `3. --allowed-origin ${APP}: OPTIONS /api/runs preflight from it ${show(pre)}, Access-Control-Allow-Origin ${acao(pre)}; GET /api/runs from it ${show(get)}, Access-Control-Allow-Origin ${acao(get)}${dropNote(s)}`;
  } finally {
    await s.stop();
  }
}

/** 4. 2,000 idle TCP sockets against the server under `ulimit -n 1024`. */
async function item4(): Promise<string> {
  const s = await startServer([], { ulimit: 1024 });
  const idle: { s: Socket; connected: boolean; closed: boolean; closedAt: number }[] = [];
  try {
    await sleep(500);
    const t0 = Date.now();
    for (let batch = 0; batch < 20; batch++) {
      const opened = Array.from({ length: 100 }, () => {
        const sock = tcpConnect({ port: s.port, host: '127.0.0.1', localAddress: '127.0.0.1' });
        const entry = { s: sock, connected: false, closed: false, closedAt: 0 };
        sock.on('error', () => undefined);
        sock.on('connect', () => (entry.connected = true));
        sock.on('close', () => {
          entry.closed = true;
          entry.closedAt = Date.now();
        });
        sock.resume(); // reads (to see a close) but never sends a byte
        idle.push(entry);
        return entry;
      });
      const deadline = Date.now() + 1000;
      while (Date.now() < deadline && opened.some((e) => !e.connected && !e.closed)) await sleep(20);
    }
    const openMs = Date.now() - t0;
    await sleep(1000);
    const held = (): number => idle.filter((e) => e.connected && !e.closed).length;
    const neverConnected = idle.filter((e) => !e.connected && !e.closed).length;
    const closedAtOnce = idle.filter((e) => e.closed).length;
    const heldAfterOpen = held();
    const health1 = await http(s.http, '/health', { localAddress: '127.0.0.2', timeoutMs: 5000 });
    await sleep(12_000);
    const closedLater = idle.filter((e) => e.closed).length - closedAtOnce;
    const health2 = await http(s.http, '/health', { localAddress: '127.0.0.2', timeoutMs: 5000 });
    return (
      `4. ulimit -n 1024, 2,000 idle sockets from 127.0.0.1 (opened in ${(openMs / 1000).toFixed(1)} s): ${heldAfterOpen} held open, ${closedAtOnce} closed by the server at once, ${neverConnected} never connected; ` +
      `GET /health from 127.0.0.2: ${show(health1)}; 12 s later: ${closedLater} more idle sockets closed by the server (${held()} still open), GET /health from 127.0.0.2: ${show(health2)}${dropNote(s)}`
    );
  } finally {
    for (const e of idle) e.s.destroy();
    await s.stop();
  }
}

/** Opens an SSE stream over raw TCP; resolves with the status line's code (the socket stays open when 200). */
function sseStream(s: Server, path: string, localAddress: string): Promise<{ status: string; socket: Socket }> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ port: s.port, host: '127.0.0.1', localAddress });
    let settled = false;
    let head = '';
    const done = (status: string): void => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ status, socket: sock });
      }
    };
    const timer = setTimeout(() => done('no answer in 3 s'), 3000);
    sock.on('error', (e) => done(errorName(e)));
    sock.on('close', () => done(head === '' ? 'closed' : head));
    sock.once('connect', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nAccept: text/event-stream\r\n\r\n`));
    sock.on('data', (c: Buffer) => {
      head += c.toString('utf8');
      const status = /^HTTP\/1\.1 (\d+)/.exec(head)?.[1];
      if (status === undefined) return;
      if (status === '200') return done('200');
      // Wait for the body's error code (a small JSON body).
      const code = /"code"\s*:\s*"([\w-]+)"/.exec(head)?.[1];
      if (code !== undefined) done(`${status} ${code}`);
      else setTimeout(() => done(status), 300);
    });
  });
}

/** 5. SSE: 200 streams from one address; query validation. */
async function item5(): Promise<string> {
  const s = await startServer([]);
  const streams: Socket[] = [];
  try {
    await sleep(500);
    const statuses: string[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await sseStream(s, '/api/events?pipeline_id=*', '127.0.0.1');
      streams.push(r.socket);
      statuses.push(r.status);
    }
    await sleep(500);
    const accepted = statuses.filter((x) => x === '200').length;
    const stillOpen = streams.filter((x, i) => statuses[i] === '200' && !x.destroyed && x.readyState === 'open').length;
    for (const x of streams) x.destroy();
    const run = (await listRuns(s, 'limit=1', {}, '127.0.0.2'))[0]?.run_id ?? 'r1';
    const since = await http(s.http, `/api/events?run_id=${run}&since=abc`, { localAddress: '127.0.0.2', timeoutMs: 5000 });
    const bogus = await http(s.http, '/api/events?pipeline_id=*&bogus=1', { localAddress: '127.0.0.2', timeoutMs: 5000 });
    return (
      `5. SSE: 200 streams GET /api/events?pipeline_id=* from 127.0.0.1: ${accepted} accepted (${stillOpen} still open), refused: ${countBy(statuses.filter((x) => x !== '200'))}; ` +
      `from 127.0.0.2: since=abc ${show(since)}, an unknown parameter (bogus=1) ${show(bogus)}${dropNote(s)}`
    );
  } finally {
    for (const x of streams) x.destroy();
    await s.stop();
  }
}

/** 6. 200 paused WebSocket clients asking for a replay of finished runs: the server's RSS. */
async function item6(): Promise<string> {
  const s = await startServer([]);
  const clients: WebSocket[] = [];
  try {
    // The demo starts a run every 0.1-0.7 s (whatever --concurrency says): let some finish.
    await sleep(11_000);
    // At most 95 runs: 1 + 94 subscribe messages stay within the message burst (100) of both servers.
    const ended = (await listRuns(s, 'limit=500')).filter((r) => r.status !== 'RUNNING' && r.status !== 'PENDING').slice(0, 95);
    const sized: { run: RunRow; events: number; bytes: number }[] = [];
    for (const run of ended) {
      const r = await http(s.http, `/api/runs/${run.run_id}/events?limit=10000`);
      const body = json<{ events: unknown[] }>(r);
      if (body !== null && 'bytes' in r) sized.push({ run, events: body.events.length, bytes: r.bytes });
    }
    sized.sort((a, b) => b.events - a.events);
    const longest = sized[0];
    if (longest === undefined) return '6. no finished run to replay';
    const sample = async (ms: number): Promise<number> => {
      let max = s.rss();
      for (let t = 0; t < ms; t += 500) {
        await sleep(500);
        max = Math.max(max, s.rss());
      }
      return max;
    };
    const before = await sample(1000);
    const outcomes: string[] = [];
    const closes: string[] = [];
    for (let i = 0; i < 200; i++) {
      const o = await openWs(s.ws, { localAddress: i % 2 === 0 ? '127.0.0.1' : '127.0.0.2' });
      if (!('open' in o)) {
        outcomes.push('status' in o ? String(o.status) : 'close' in o ? `close ${o.close}` : o.error);
        continue;
      }
      outcomes.push('open');
      const ws = o.open;
      clients.push(ws);
      ws.on('close', (code) => closes.push(String(code)));
      // Stop reading at once: the server's writes back up.
      (ws as unknown as { _socket: Socket })._socket.pause();
      ws.send(JSON.stringify({ type: 'subscribe', run_id: longest.run.run_id, since: 0, id: 'r0' }));
    }
    const afterOne = await sample(3000);
    // The same clients then ask for the replay of every other finished run (up to 94 more).
    const more = sized.slice(1);
    for (const ws of clients) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      more.forEach((x, j) => ws.send(JSON.stringify({ type: 'subscribe', run_id: x.run.run_id, since: 0, id: `r${j + 1}` })));
    }
    const afterMany = await sample(5000);
    const manyBytes = sized.reduce((n, x) => n + x.bytes, 0);
    return (
      `6. 200 paused WS clients (100 from 127.0.0.1, 100 from 127.0.0.2; connections: ${countBy(outcomes)}), each subscribe run_id (the longest finished run: ${longest.run.pipeline_id}, ${longest.events} events, ${(longest.bytes / 1024).toFixed(0)} KB as REST JSON) since 0, never reading: ` +
      `RSS ${mib(before)} before → ${mib(afterOne)} (+${mib(afterOne - before)}); then each also subscribes to ${more.length} more finished runs since 0 (${(manyBytes / MiB).toFixed(1)} MB of events per client, ${((200 * manyBytes) / MiB).toFixed(0)} MB for all): RSS ${mib(afterMany)} (+${mib(afterMany - before)}); ` +
      `clients closed by the server: ${countBy(closes)}${dropNote(s)}`
    );
  } finally {
    for (const ws of clients) ws.terminate();
    await s.stop();
  }
}

/** 7. WebSocket token guesses per second; REST rate-limit buckets behind a proxy. */
async function item7(): Promise<string> {
  let wsPart: string;
  const a = await startServer([{ name: '--token', value: 'the-right-token-0123456789' }]);
  try {
    await sleep(500);
    const outcomes: string[] = [];
    const end = Date.now() + 3000;
    let n = 0;
    const worker = async (): Promise<void> => {
      while (Date.now() < end && n < 20_000) {
        const o = await openWs(`${a.ws}?token=guess-${n++}`, { timeoutMs: 3000 });
        if ('open' in o) {
          const code = await new Promise<number>((resolve) => {
            const t = setTimeout(() => resolve(-1), 2000);
            o.open.once('close', (c) => {
              clearTimeout(t);
              resolve(c);
            });
          });
          o.open.terminate();
          outcomes.push(code === -1 ? 'open (not closed in 2 s)' : `close ${code}`);
        } else outcomes.push('status' in o ? `HTTP ${o.status}` : 'close' in o ? `close ${o.close}` : o.error);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const closed4001 = outcomes.filter((x) => x === 'close 4001').length;
    wsPart = `WS --token, bad-token guesses from 127.0.0.1 in 3 s: ${outcomes.length} (${(outcomes.length / 3).toFixed(0)}/s), close 4001 (a guess answered) ×${closed4001} = ${(closed4001 / 3).toFixed(0)}/s; ${countBy(outcomes)}${dropNote(a)}`;
  } finally {
    await a.stop();
  }
  const b = await startServer([{ name: '--trust-proxy', value: 'loopback' }]);
  try {
    await sleep(500);
    const from = (ip: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': ip } });
    const first: string[] = [];
    let limited = false;
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (!limited && sent < 600) {
        sent++;
        const r = await http(b.http, '/api/runs?limit=1', from('10.0.0.1'));
        first.push(show(r));
        if (!('error' in r) && r.status === 429) limited = true;
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    const other = await http(b.http, '/api/runs?limit=1', from('10.0.0.2'));
    return `7. ${wsPart} | REST --trust-proxy loopback${dropNote(b)}: X-Forwarded-For 10.0.0.1 until its bucket ran out (20 at a time): ${countBy(first)}; then X-Forwarded-For 10.0.0.2 ${show(other)}`;
  } finally {
    await b.stop();
  }
}

/** 8. Deep and huge inputs, long ids, and the 403/404 oracle of a scoped token. */
async function item8(): Promise<string> {
  const s = await startServer([{ name: '--jwt-secret', value: SECRET }]);
  try {
    await sleep(1000);
    const admin = { authorization: `Bearer ${await jwt({ pipelines: '*', actions: ['cancel', 'retry', 'delete'] })}` };
    const run = await runningRun(s, admin);
    const target = run?.run_id ?? 'no-running-run';
    const nested = `{"reason":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const deep = await http(s.http, `/api/runs/${target}/cancel`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: nested });
    const huge = await http(s.http, `/api/runs/${target}/cancel`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'r'.repeat(1_000_000) }) });
    const after = json<{ status: string }>(await http(s.http, `/api/runs/${target}`, { headers: admin }))?.status ?? '?';
    const id64 = await http(s.http, `/api/runs/${'a'.repeat(64 * 1024)}`, { headers: admin });
    const id12 = await http(s.http, `/api/runs/${'a'.repeat(12 * 1024)}`, { headers: admin });
    const size = (r: Reply): string => ('error' in r ? r.error : `${show(r)}, ${r.bytes} bytes`);
    const other = (await listRuns(s, 'limit=50', admin)).find((r) => r.pipeline_id !== 'demo_workflow');
    const scoped = { authorization: `Bearer ${await jwt({ pipelines: ['demo_workflow'] })}` };
    const forbidden = other === undefined ? null : await http(s.http, `/api/runs/${other.run_id}`, { headers: scoped });
    const unknown = await http(s.http, '/api/runs/00000000-0000-4000-8000-000000000000', { headers: scoped });
    const same = forbidden !== null && !('error' in forbidden) && !('error' in unknown) && forbidden.status === unknown.status && forbidden.text.replace(other?.run_id ?? '', 'X') === unknown.text.replace('00000000-0000-4000-8000-000000000000', 'X');
    return (
      `8. POST cancel (a running ${run?.pipeline_id ?? '?'} run) with reason nested 5,000 deep: ${show(deep)}; with a 1 MB reason: ${size(huge)} (the run is then ${after}); ` +
      `GET /api/runs/<64 KiB id>: ${size(id64)}; GET /api/runs/<12 KiB id>: ${size(id12)}; ` +
      `JWT scoped to demo_workflow: GET /api/runs/<${other?.pipeline_id ?? '?'} run> ${forbidden === null ? 'no such run found' : show(forbidden)} vs /api/runs/<unknown id> ${show(unknown)} (bodies ${same ? 'identical' : 'differ'})${dropNote(s)}`
    );
  } finally {
    await s.stop();
  }
}

// ---------------------------------------------------------------------------------------

const ATTACKS: [number, () => Promise<string>][] = [
  [1, item1],
  [2, item2],
  [3, item3],
  [4, item4],
  [5, item5],
  [6, item6],
  [7, item7],
  [8, item8],
];

let commit = '?';
try {
  commit = execFileSync('git', ['-C', ROOT, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim().slice(0, 90);
} catch {
  // not a git checkout
}
console.log(`attack report (issue 12) for ${ROOT} @ ${commit}; node ${process.version}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
try {
  for (const [n, attack] of ATTACKS) {
    if (!ITEMS.has(n)) continue;
    const t0 = Date.now();
    let line: string;
    try {
      line = await attack();
    } catch (error) {
      line = `${n}. FAILED: ${error instanceof Error ? error.message : String(error)}`;
    }
    console.log(`${line}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
} finally {
  killAllStarted();
}
process.exit(0);
