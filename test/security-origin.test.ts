/**
 * Browser-origin protection on every route (issue 12 items 2 and 3): a request with a
 * foreign `Origin` is refused on WebSocket, SSE, REST and static files alike; a
 * cross-site request cannot change state; without auth, an unknown `Host` is refused
 * (DNS rebinding); CORS answers for the allowed origins only. Scripts (no `Origin`) work
 * as before, and each refusal is checked beside a request that is served.
 */
import { describe, expect, it } from 'vitest';
import { raw } from './helpers/http.js';
import { logHolds, startFixture } from './helpers/server-fixture.js';
import { connect, connectRejected } from './helpers/ws-client.js';

const EVIL = 'http://evil.example';

describe('the open default server (no token) and a page of another site', () => {
  it('refuses a WebSocket upgrade, SSE, REST reads and the dashboard with a foreign Origin (403); without Origin they work', async () => {
    const f = await startFixture();
    expect(await connectRejected(f.server.url, { origin: EVIL })).toBe(403);
    expect(await connectRejected(f.server.url, { origin: EVIL, path: '/ws' })).toBe(403);
    for (const path of ['/api/runs', '/api/events?pipeline_id=*', '/metrics', '/', '/api/openapi.json']) {
      const refused = await raw(f.server.httpUrl, path, { headers: { origin: EVIL } });
      expect(refused.status, path).toBe(403);
      expect(refused.error?.code, path).toBe('forbidden_origin');
      expect(refused.headers['access-control-allow-origin'], path).toBeUndefined();
      expect((await raw(f.server.httpUrl, path)).status, path).toBe(200);
    }
    const script = await f.client();
    await script.subscribe({ pipeline_id: '*' });
  });

  it('cannot cancel or retry a run with a cross-site simple POST (no body), with or without Origin', async () => {
    const f = await startFixture({ server: { pipelines: [] } });
    const run = await f.startGated({ key: 'csrf', phases: [1, 1] });
    await logHolds(f, run.runId, 3);
    for (const action of ['cancel', 'retry']) {
      const withOrigin = await raw(f.server.httpUrl, `/api/runs/${run.runId}/${action}`, { method: 'POST', headers: { origin: EVIL, 'content-type': 'text/plain' } });
      expect(withOrigin.status).toBe(403);
      const fetchMetadata = await raw(f.server.httpUrl, `/api/runs/${run.runId}/${action}`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site' } });
      expect(fetchMetadata.status).toBe(403);
      expect(fetchMetadata.error?.code).toBe('forbidden_origin');
    }
    expect((await f.tracking.getStatus(run.runId))?.status).toBe('RUNNING');
    // The same request from a script (no Origin) or the server's own page cancels.
    const own = await raw(f.server.httpUrl, `/api/runs/${run.runId}/cancel`, { method: 'POST', headers: { origin: f.server.httpUrl } });
    expect(own.status).toBe(200);
    await expect(run.waitResult({ timeoutMs: 5000 })).rejects.toThrow();
  });

  it('serves its own pages: the Origin of the server itself (by IP, by localhost name) is accepted on every route', async () => {
    const f = await startFixture();
    const own = f.server.httpUrl;
    const byName = `http://localhost:${f.server.port}`;
    expect((await raw(own, '/api/runs', { headers: { origin: own } })).status).toBe(200);
    expect((await raw(own, '/api/runs', { headers: { origin: byName, host: `localhost:${f.server.port}` } })).status).toBe(200);
    // The page of another port on the same host is another origin.
    expect((await raw(own, '/api/runs', { headers: { origin: `http://127.0.0.1:${f.server.port + 1}` } })).status).toBe(403);
    const ws = await connect(f.server.url, { origin: own });
    await ws.subscribe({ pipeline_id: '*' });
  });

  it('answers only to loopback names and IP addresses in Host (DNS rebinding), on every route; allowedHosts adds names', async () => {
    const f = await startFixture();
    const port = f.server.port;
    for (const path of ['/api/runs', '/api/events?pipeline_id=*', '/', '/health']) {
      const rebound = await raw(f.server.httpUrl, path, { headers: { host: `evil.example:${port}` } });
      expect(rebound.status, path).toBe(403);
      expect(rebound.error?.code, path).toBe('forbidden_host');
    }
    expect(await connectRejected(f.server.url, { ws: { headers: { host: `evil.example:${port}` } } })).toBe(403);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `app.localhost:${port}`, `192.168.1.20:${port}`]) {
      expect((await raw(f.server.httpUrl, '/api/runs', { headers: { host } })).status, host).toBe(200);
    }
    const named = await startFixture({ server: { allowedHosts: ['flowcast.internal', '.corp.example'] } });
    for (const host of ['flowcast.internal', `flowcast.internal:${named.server.port}`, 'a.corp.example', 'corp.example']) {
      expect((await raw(named.server.httpUrl, '/api/runs', { headers: { host } })).status, host).toBe(200);
    }
    expect((await raw(named.server.httpUrl, '/api/runs', { headers: { host: 'corp.example.evil.example' } })).status).toBe(403);
  });

  it('with auth, any Host is answered (the token protects it, a proxy may use any name), and Origin is still checked', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { k: { id: 'ops' } } } } });
    expect((await raw(f.server.httpUrl, '/api/runs?token=k', { headers: { host: 'flow.example.com' } })).status).toBe(200);
    expect((await raw(f.server.httpUrl, '/api/runs?token=k', { headers: { origin: EVIL } })).status).toBe(403);
  });

  it('refuses options that would open everything: "*", "null" and paths as origins, bad host names', async () => {
    await expect(startFixture({ server: { allowedOrigins: ['*'] } })).rejects.toThrow(/allowedOrigins\[0\] must be an origin/);
    await expect(startFixture({ server: { allowedOrigins: ['null'] } })).rejects.toThrow(/allowedOrigins\[0\]/);
    await expect(startFixture({ server: { allowedOrigins: ['https://app.example/path'] } })).rejects.toThrow(/no path/);
    await expect(startFixture({ server: { allowedHosts: ['*'] } })).rejects.toThrow(/allowedHosts\[0\] must be a host name/);
    await expect(startFixture({ server: { trustProxy: 'not an address' } })).rejects.toThrow(/trustProxy/);
  });
});

describe('CORS for the allowed origins (opt-in)', () => {
  const APP = 'http://app.example:3000';

  it('answers the preflight of an allowed origin, and REST and SSE answers carry its Access-Control-Allow-Origin (never "*")', async () => {
    const f = await startFixture({ server: { allowedOrigins: [APP], auth: { apiKeys: { k: { id: 'ops' } } } } });
    const preflight = await raw(f.server.httpUrl, '/api/runs', {
      method: 'OPTIONS',
      headers: { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(APP);
    expect(String(preflight.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization');
    expect(preflight.headers['access-control-allow-credentials']).toBeUndefined();
    const get = await raw(f.server.httpUrl, '/api/runs', { headers: { origin: APP, authorization: 'Bearer k' } });
    expect(get.status).toBe(200);
    expect(get.headers['access-control-allow-origin']).toBe(APP);
    expect(get.headers.vary).toMatch(/Origin/i);
    const sse = await raw(f.server.httpUrl, '/api/events?pipeline_id=*&token=k', { headers: { origin: APP } });
    expect(sse.status).toBe(200);
    expect(sse.headers['access-control-allow-origin']).toBe(APP);
    const ws = await connect(f.server.url, { origin: APP, queryToken: 'k' });
    await ws.subscribe({ pipeline_id: '*' });
  });

  it('refuses the preflight of another origin, and a server without allowed origins answers no CORS at all', async () => {
    const f = await startFixture({ server: { allowedOrigins: [APP] } });
    const other = await raw(f.server.httpUrl, '/api/runs', { method: 'OPTIONS', headers: { origin: EVIL, 'access-control-request-method': 'GET' } });
    expect(other.status).toBe(403);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const plain = await startFixture();
    const get = await raw(plain.server.httpUrl, '/api/runs');
    expect(get.headers['access-control-allow-origin']).toBeUndefined();
  });
});
