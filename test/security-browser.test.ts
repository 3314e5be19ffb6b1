/**
 * A real Chromium page on another origin attacks the open default server (issue 12
 * item 2): it tries to read the WebSocket stream, to read the REST API and to cancel a run
 * with a cross-site simple request; a page reached through a rebound name gets nothing.
 * Then the same page, its origin allowed, uses REST (CORS), SSE and the WebSocket.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH } from './helpers/browser.js';
import { logHolds, startFixture } from './helpers/server-fixture.js';

const PAGE = `<!doctype html><html><body><p id="status">ready</p><script>
window.attack = async (target, runId) => {
  const out = { wsOpened: false, wsMessages: 0, wsClosed: false, restRead: null, cancelSent: null };
  await new Promise((resolve) => {
    const ws = new WebSocket(target.replace('http', 'ws') + '/ws');
    ws.onopen = () => { out.wsOpened = true; ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: '*' })); };
    ws.onmessage = () => { out.wsMessages++; };
    ws.onclose = () => { out.wsClosed = true; resolve(); };
    setTimeout(resolve, 3000);
  });
  try { out.restRead = await (await fetch(target + '/api/runs')).text(); } catch (e) { out.restRead = 'failed: ' + e.name; }
  try { await fetch(target + '/api/runs/' + runId + '/cancel', { method: 'POST', mode: 'no-cors' }); out.cancelSent = 'sent'; } catch (e) { out.cancelSent = 'failed: ' + e.name; }
  return out;
};
window.use = async (target) => {
  const out = { runs: null, sse: null, ws: null };
  out.runs = (await (await fetch(target + '/api/runs')).json()).runs.length;
  out.sse = await new Promise((resolve) => {
    const es = new EventSource(target + '/api/events?pipeline_id=*');
    es.addEventListener('control', (m) => { es.close(); resolve(JSON.parse(m.data).type); });
    es.onerror = () => { es.close(); resolve('error'); };
  });
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket(target.replace('http', 'ws') + '/ws');
    ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', pipeline_id: '*' }));
    ws.onmessage = (m) => { ws.close(); resolve(JSON.parse(m.data).type); };
    ws.onerror = () => resolve('error');
  });
  return out;
};
</script></body></html>`;

describe('a page of another origin in Chromium', () => {
  let browser: Browser;
  let pages: Server;
  let pageOrigin: string;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--host-resolver-rules=MAP evil.example 127.0.0.1'],
    });
    pages = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE));
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => pages?.close(resolve));
  });

  it('cannot read the WebSocket, cannot read REST and cannot cancel a run of the open default server', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    const run = await f.startGated({ key: 'victim', phases: [2, 2] });
    await logHolds(f, run.runId, 4);
    const page = await browser.newPage();
    await page.goto(`${pageOrigin}/`);
    const out = await page.evaluate(
      ({ target, runId }) => (globalThis as unknown as { attack: (t: string, r: string) => Promise<Record<string, unknown>> }).attack(target, runId),
      { target: f.server.httpUrl, runId: run.runId },
    );
    expect(out.wsOpened).toBe(false);
    expect(out.wsMessages).toBe(0);
    expect(String(out.restRead)).toMatch(/^failed: TypeError/);
    expect(out.cancelSent).toBe('sent');
    expect((await f.tracking.getStatus(run.runId))?.status).toBe('RUNNING');
    await page.close();
  });

  it('a name rebound to 127.0.0.1 (DNS rebinding) gets 403 for the dashboard and the API', { timeout: 60_000 }, async () => {
    const f = await startFixture();
    const page = await browser.newPage();
    const answer = await page.goto(`http://evil.example:${f.server.port}/`);
    expect(answer?.status()).toBe(403);
    expect(await page.textContent('body')).toContain('forbidden_host');
    const api = await page.goto(`http://evil.example:${f.server.port}/api/runs`);
    expect(api?.status()).toBe(403);
    await page.close();
  });

  it('once its origin is allowed, the same page uses REST (CORS), SSE and the WebSocket', { timeout: 60_000 }, async () => {
    const f = await startFixture({ server: { allowedOrigins: [pageOrigin] } });
    await f.runToEnd(f.alpha);
    const page = await browser.newPage();
    await page.goto(`${pageOrigin}/`);
    const out = await page.evaluate((target) => (globalThis as unknown as { use: (t: string) => Promise<Record<string, unknown>> }).use(target), f.server.httpUrl);
    expect(out).toEqual({ runs: 1, sse: 'subscribed', ws: 'subscribed' });
    await page.close();
  });
});
