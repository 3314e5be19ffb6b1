/**
 * For the dashboard suites (test/dashboard-*.test.ts): the built dashboard must exist,
 * a Chromium page per test with its console and errors recorded, screenshots in
 * test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { expect } from 'vitest';
import { openPage, type WatchedPage } from './browser.js';
import { onCleanup } from './server-fixture.js';

export const DASHBOARD_INDEX = fileURLToPath(new URL('../../dist/dashboard/index.html', import.meta.url));
export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

/** Throws a clear error when the dashboard has not been built. */
export function requireBuiltDashboard(): void {
  if (!existsSync(DASHBOARD_INDEX)) {
    throw new Error(`The dashboard is not built (${DASHBOARD_INDEX} is missing): run "npm run build:dashboard" (scripts/test.sh does it before vitest)`);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
}

/** Opens `url` in a 1280×800 page that is closed after the test. */
export async function open(browser: Browser, url: string): Promise<WatchedPage> {
  const watched = await openPage(browser, 'about:blank');
  onCleanup(() => watched.page.close());
  await watched.page.setViewportSize({ width: 1280, height: 800 });
  await watched.page.goto(url);
  return watched;
}

/** A screenshot of the page in test-artifacts/<name>.png (or at `path`). */
export async function screenshot(watched: WatchedPage, name: string, options: { fullPage?: boolean; path?: string } = {}): Promise<void> {
  await watched.page.screenshot({ path: options.path ?? `${ARTIFACTS}${name}.png`, fullPage: options.fullPage ?? true });
}

/** Messages a browser prints by itself when the server is down (not the page's errors). */
const NETWORK = /WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED/;

/** Asserts the page threw nothing and logged no error (network noise of a stopped server allowed with `allowNetwork`). */
export function expectNoErrors(watched: WatchedPage, options: { allowNetwork?: boolean } = {}): void {
  expect(watched.errors).toEqual([]);
  const errors = watched.consoleErrors().filter((m) => !(options.allowNetwork === true && NETWORK.test(m.text)));
  expect(errors).toEqual([]);
}
