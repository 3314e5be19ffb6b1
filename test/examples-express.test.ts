/**
 * examples/express run as its README says: an Express app with its own routes and
 * flowcast mounted at /flowcast on the same port. An order posted to the app's route
 * starts a run that a WebSocket client under /flowcast follows to its end; REST,
 * /metrics and the dashboard (in Chromium) answer under /flowcast; Ctrl-C stops it.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openPage } from './helpers/browser.js';
import { requireBuiltDashboard } from './helpers/dashboard.js';
import { groupGone, runExample } from './helpers/example-process.js';
import { connect } from './helpers/ws-client.js';

let browser: Browser;
beforeAll(async () => {
  requireBuiltDashboard();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('examples/express', () => {
  it('serves the app\'s routes and flowcast under /flowcast on one port', async () => {
    const app = runExample(process.execPath, ['--import', 'tsx', 'examples/express/main.ts'], { PORT: '0' });
    const [, url] = await app.waitFor(/open (http:\/\/127\.0\.0\.1:\d+)\/ \(the app\)/, 'the app says where to open it', 60_000);
    const home = await fetch(`${url}/`);
    expect(home.status).toBe(200);
    expect(await home.text()).toContain('<h1>Shop</h1>');

    const client = await connect(`${url!.replace('http', 'ws')}/`, { path: '/flowcast/ws' });
    await client.subscribe({ pipeline_id: 'fulfil_order' });
    const posted = await fetch(`${url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: 2 }) });
    expect(posted.status).toBe(201);
    const { run_id: runId, dashboard } = (await posted.json()) as { run_id: string; dashboard: string };
    const end = await client.waitForEnd(runId, 30_000);
    expect(end.type).toBe('PipelineCompleteEvent');
    await client.close();
    expect(((await (await fetch(`${url}/api/orders`)).json()) as { orders: unknown[] }).orders).toEqual([{ run_id: runId, status: 'COMPLETED' }]);
    expect((await (await fetch(`${url}/flowcast/api/runs/${runId}`)).json())).toMatchObject({ run_id: runId, status: 'COMPLETED' });
    expect(await (await fetch(`${url}/flowcast/metrics`)).text()).toContain('flowcast_pipeline_runs_total{pipeline_id="fulfil_order",pipeline_type="sequential",status="COMPLETED"} 1');
    expect((await fetch(`${url}/api/runs`)).status).toBe(404);

    const { page, errors, consoleErrors } = await openPage(browser, `${url}${dashboard}`);
    await page.waitForSelector('[data-testid="run-detail"][data-status="COMPLETED"]', { timeout: 20_000 });
    expect(await page.textContent('[data-testid="run-detail"]')).toContain('charged');
    expect(errors).toEqual([]);
    expect(consoleErrors()).toEqual([]);
    await page.close();

    app.signal('SIGINT');
    expect(await app.exited).toMatchObject({ code: 0 });
    await groupGone(app);
    expect(app.output()).toContain('express-app: stopping');
  }, 120_000);
});
