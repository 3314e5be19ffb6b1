/**
 * examples/seed-003-app run as its README says, driven in a real Chromium: Start, the
 * output tailed live, a second Start refused with the running run's id, a reload that
 * finds the run in flight and shows its output from the first line, with no line twice.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openPage } from './helpers/browser.js';
import { groupGone, runExample } from './helpers/example-process.js';

const LINES = 30;
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const COMPLETED = `document.getElementById('status')?.dataset.state === 'completed'`;
const expected = Array.from({ length: LINES }, (_, i) => `Task message ${i}`);

describe('examples/seed-003-app', () => {
  it('starts the task once, tails it live, refuses a second start, and survives a reload', async () => {
    const app = runExample(process.execPath, ['--import', 'tsx', 'examples/seed-003-app/main.ts'], { PORT: '0', TAIL_LINES: String(LINES), TAIL_INTERVAL_MS: '400' });
    const [, url] = await app.waitFor(/open (http:\/\/127\.0\.0\.1:\d+)\//, 'the app says where to open it');
    const { page, errors, consoleErrors } = await openPage(browser, `${url}/`);
    const log = page.locator('#log');
    const status = page.locator('#status');
    await expect.poll(() => status.textContent(), { timeout: 15_000 }).toBe('No task yet');

    await page.getByRole('button', { name: 'Start Task' }).click();
    await page.locator('.flash.info', { hasText: 'Task started' }).waitFor();
    await page.waitForFunction(`(document.getElementById('log')?.textContent ?? '').includes('Task message 1\\n')`);
    const running = (await (await fetch(`${url}/api/runs?status=RUNNING&pipeline_id=tail`)).json()) as { runs: { run_id: string }[] };
    expect(running.runs).toHaveLength(1);
    const runId = running.runs[0]!.run_id;

    // The seed's guard: a second start while the task runs is refused, naming the run.
    await page.getByRole('button', { name: 'Start Task' }).click();
    await expect.poll(() => page.locator('.flash').textContent(), { timeout: 15_000 }).toBe(`Task is already running (run ${runId})`);

    // A reload with nothing remembered: the page finds the run in flight through the REST API.
    await page.evaluate('localStorage.clear()');
    await page.reload();
    await page.waitForFunction(COMPLETED, undefined, { timeout: 60_000 });
    expect(await status.textContent()).toBe('Task finished');
    expect(((await log.textContent()) ?? '').split('\n').slice(0, -1)).toEqual(expected);

    // And after the task ended, a reload shows the run this browser started, whole.
    await page.reload();
    await page.waitForFunction(COMPLETED);
    expect(((await log.textContent()) ?? '').split('\n').slice(0, -1)).toEqual(expected);
    // A new start is allowed again once the task ended.
    await page.getByRole('button', { name: 'Start Task' }).click();
    await page.locator('.flash.info', { hasText: 'Task started' }).waitFor();
    expect(errors).toEqual([]);
    // Chromium logs every 4xx answer to fetch(): the refused start is the only one expected.
    expect(consoleErrors().map((m) => m.text)).toEqual(['Failed to load resource: the server responded with a status of 409 (Conflict)']);

    // Ctrl-C: the app cancels the run in flight and stops; nothing is left running.
    app.signal('SIGINT');
    expect(await app.exited).toMatchObject({ code: 0 });
    await groupGone(app);
    expect(app.output()).toContain('seed-003-app: stopping');
  }, 120_000);
});
