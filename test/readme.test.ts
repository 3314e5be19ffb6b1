import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseBlocks } from './helpers/doc-blocks.js';

const root = join(import.meta.dirname, '..');

describe('README', () => {
  it('shows the two commands and an example that runs as printed', async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const firstScreen = readme.split('\n').slice(0, 30).join('\n');
    expect(firstScreen).toContain('npm install && npm start');
    expect(firstScreen).toContain('npm test');
    // The doc-block harness (docs-blocks.test.ts) compiles and runs every block; this checks what the first one prints.
    const example = parseBlocks('README.md', readme).find((b) => b.lang === 'ts')?.body;
    expect(example).toBeDefined();
    expect(example!.trim().split('\n').length).toBeLessThanOrEqual(12);
    const dir = mkdtempSync(join(root, '.tmp-readme-'));
    const file = join(dir, 'example.mts');
    writeFileSync(file, example!.replace("from 'flowcast'", `from ${JSON.stringify(join(root, 'src/index.ts'))}`));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { cwd: root, timeout: 30_000 });
      expect(stdout).toContain('[ 0, 1, 4, 9 ] COMPLETED');
      expect(stdout).toContain('square done in');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is what .ci/run runs: npm test', () => {
    const ci = readFileSync(join(root, '.ci/run'), 'utf8');
    expect(ci).toMatch(/^npm test$/m);
  });
});
