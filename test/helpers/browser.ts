/**
 * Headless Chromium for the browser tests: Debian's `/usr/bin/chromium` driven by
 * `playwright-core` (no downloaded browser). `scripts/setup-system.sh` installs it.
 * Pages opened with {@link openPage} keep every console message and page error, so a test
 * can check that nothing went wrong in the page.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Launches headless Chromium. Close it with `browser.close()`. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} is missing: run "bash scripts/setup-system.sh" (installs Debian's chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/** One console message of a page. */
export interface ConsoleEntry {
  type: string;
  text: string;
}

/** A page with what it printed: `console` (every message) and `errors` (uncaught exceptions). */
export interface WatchedPage {
  page: Page;
  console: ConsoleEntry[];
  errors: string[];
  /** The console messages of type `error`. */
  consoleErrors: () => ConsoleEntry[];
}

/** Opens `url` in a new page of `browser`, recording its console and uncaught errors from the start. */
export async function openPage(browser: Browser, url: string): Promise<WatchedPage> {
  const page = await browser.newPage();
  const console: ConsoleEntry[] = [];
  const errors: string[] = [];
  page.on('console', (msg) => console.push({ type: msg.type(), text: msg.text() }));
  page.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`));
  await page.goto(url);
  return { page, console, errors, consoleErrors: () => console.filter((m) => m.type === 'error') };
}
