/**
 * The package as a user installs it: built into a staging folder, packed with `npm pack`,
 * installed from the tarball into fresh projects outside the repository (dependencies
 * from the npm cache, else the npm registry). Checks CommonJS `require` (require(esm)),
 * ESM `import`, the CLI, a strict `tsc` with `skipLibCheck: false`, and that a
 * client-only install pulls no server or Redis package.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  version: string;
  exports: Record<string, string | Record<string, string>>;
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
/** The environment without the npm_* variables of an enclosing `npm test`. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const SERVER_AND_REDIS = ['bullmq', 'ioredis', 'fastify', '@fastify/cors', '@fastify/static', 'prom-client', 'jose', 'rate-limiter-flexible'];

let work = '';
let tarball = '';
let packedFiles: string[] = [];

/** Runs `npm <args>` in `cwd`; resolves with its output (npm writes warnings to stderr). */
async function npm(cwd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], { cwd, env, timeout: 240_000, maxBuffer: 64 * 1024 * 1024 });
}

/** A fresh project in the temporary folder with the packed flowcast (and `extra` packages) installed. */
async function project(name: string, extra: string[] = []): Promise<{ dir: string; npmOutput: string }> {
  const dir = join(work, name);
  cpSync(join(work, 'empty'), dir, { recursive: true });
  const { stdout, stderr } = await npm(dir, ['install', tarball, ...extra]);
  return { dir, npmOutput: stdout + stderr };
}

/** Runs a file with the Node that runs the tests; resolves with its stdout. */
async function node(dir: string, args: string[]): Promise<string> {
  return (await run(process.execPath, args, { cwd: dir, env, timeout: 60_000 })).stdout;
}

/** `tsc --noEmit` with the strictest settings and `skipLibCheck: false` over `files`. */
async function typecheck(dir: string, files: string[], types?: string[]): Promise<void> {
  const compilerOptions = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    skipLibCheck: false,
    noEmit: true,
    ...(types === undefined ? {} : { types }),
  };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }));
  await run(process.execPath, [tsc, '-p', dir], { cwd: dir, env, timeout: 180_000 }).catch((error: { stdout?: string; message: string }) => {
    throw new Error(`tsc failed:\n${error.stdout ?? error.message}`);
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'flowcast-packaging-'));
  const stage = join(work, 'stage');
  for (const file of ['package.json', 'README.md', 'LICENSE', 'docs']) cpSync(join(root, file), join(stage, file), { recursive: true });
  // Build into the staging folder, not dist/: other tests may be reading dist/ meanwhile.
  await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')], { cwd: root, env, timeout: 240_000 });
  await run(process.execPath, [join(root, 'scripts/copy-assets.mjs'), join(stage, 'dist')], { cwd: root, env });
  if (existsSync(join(root, 'dist/dashboard'))) cpSync(join(root, 'dist/dashboard'), join(stage, 'dist/dashboard'), { recursive: true });
  const { stdout } = await npm(stage, ['pack', '--ignore-scripts', '--json', '--pack-destination', work]);
  const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  tarball = join(work, packed.filename);
  packedFiles = packed.files.map((file) => file.path);
  mkdirSync(join(work, 'empty'));
  writeFileSync(join(work, 'empty/package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
}, 300_000);

afterAll(async () => {
  // Two installed projects: many files to delete on a busy disk.
  if (work !== '') await rm(work, { recursive: true, force: true });
}, 120_000);

describe('npm pack', () => {
  it('ships the built entries, the LICENSE and the README, and no source maps or sources', () => {
    expect(packedFiles).toContain('LICENSE');
    expect(packedFiles).toContain('README.md');
    expect(packedFiles).toContain('dist/cli/main.js');
    for (const target of Object.values(pkg.exports)) {
      for (const file of typeof target === 'string' ? [target] : Object.values(target)) expect(packedFiles).toContain(file.replace(/^\.\//, ''));
    }
    expect(packedFiles.filter((file) => file.endsWith('.map'))).toEqual([]);
    expect(packedFiles.filter((file) => file.startsWith('src/') || file.startsWith('test/'))).toEqual([]);
  });
});

describe('docs/install.md', () => {
  it('gives the server and Redis lines with the versions flowcast is tested with', () => {
    const doc = readFileSync(join(root, 'docs/install.md'), 'utf8');
    const lines = doc.split('\n').filter((line) => line.startsWith('npm install flowcast '));
    const named = lines.flatMap((line) => line.split(' ').slice(3));
    for (const name of Object.keys(pkg.peerDependencies)) expect(named, name).toContain(`${name}@${pkg.devDependencies[name]}`);
    for (const spec of named) expect(Object.keys(pkg.peerDependencies).map((name) => `${name}@${pkg.devDependencies[name]}`)).toContain(spec);
  });
});

describe('client-only install: npm install flowcast', () => {
  let dir = '';
  let npmOutput = '';
  beforeAll(async () => {
    ({ dir, npmOutput } = await project('client'));
  }, 300_000);

  it('pulls no server or Redis package, and npm warns of no engine mismatch', () => {
    const installed = readdirSync(join(dir, 'node_modules')).flatMap((name) =>
      name.startsWith('@') ? readdirSync(join(dir, 'node_modules', name)).map((sub) => `${name}/${sub}`) : [name],
    );
    expect(installed).toContain('flowcast');
    for (const name of SERVER_AND_REDIS) expect(installed, name).not.toContain(name);
    expect(installed.filter((name) => name.startsWith('@fastify/'))).toEqual([]);
    expect(npmOutput).not.toContain('EBADENGINE');
  });

  it('require() works from CommonJS and import from ESM', async () => {
    writeFileSync(
      join(dir, 'use.cjs'),
      `const { InMemoryBroker, Pipeline } = require('flowcast');
const { PipelineMonitor } = require('flowcast/client');
const broker = new InMemoryBroker();
const double = broker.task('double', (x) => x * 2);
new Pipeline(broker, { id: 'p' }).callNext(double).kiq(21)
  .then((run) => run.waitResult())
  .then((result) => { console.log(result, typeof PipelineMonitor); return broker.close(); });
`,
    );
    expect(await node(dir, ['use.cjs'])).toBe('42 function\n');
    writeFileSync(
      join(dir, 'use.mjs'),
      `import { InMemoryBroker } from 'flowcast';
import { PipelineMonitor } from 'flowcast/client';
console.log(typeof InMemoryBroker, typeof PipelineMonitor);
`,
    );
    expect(await node(dir, ['use.mjs'])).toBe('function function\n');
  });

  it('the public types of flowcast and flowcast/client compile with skipLibCheck false and no @types of its own', async () => {
    writeFileSync(
      join(dir, 'use.ts'),
      `import { InMemoryBroker, Pipeline, type JsonValue } from 'flowcast';
import { PipelineMonitor } from 'flowcast/client';
const broker = new InMemoryBroker();
const task = broker.task('t', (x: number) => x + 1);
const value: JsonValue = 1;
export const made = [new Pipeline(broker, { id: 'p' }).callNext(task), PipelineMonitor, value];
`,
    );
    await typecheck(dir, ['use.ts'], []);
  }, 180_000);

  it('the CLI prints its help, and a server command says in one line what to install', async () => {
    const cli = join(dir, 'node_modules/flowcast/dist/cli/main.js');
    const help = await node(dir, [cli, '--help']);
    for (const name of ['serve', 'watch', 'run', 'status', 'history', 'worker', 'demo']) expect(help).toContain(`\n  ${name} `);
    expect(await node(dir, [cli, 'status', '--help'])).toContain('Usage: flowcast status');
    const serve = await run(process.execPath, [cli, 'serve'], { cwd: dir, env, timeout: 60_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(serve.code).toBe(1);
    expect(serve.stderr.trim().split('\n')).toHaveLength(1);
    expect(serve.stderr).toContain(`npm install fastify@${pkg.peerDependencies['fastify']}`);
    expect(serve.stderr).toContain(`bullmq@${pkg.peerDependencies['bullmq']}`);
  });
});

describe('full install: flowcast with the server and Redis packages', () => {
  let dir = '';
  beforeAll(async () => {
    const peers = Object.keys(pkg.peerDependencies).map((name) => `${name}@${pkg.devDependencies[name]}`);
    ({ dir } = await project('full', peers));
  }, 300_000);

  it('require() gives every entry point', async () => {
    writeFileSync(
      join(dir, 'use.cjs'),
      `for (const entry of ['flowcast', 'flowcast/client', 'flowcast/server', 'flowcast/redis']) console.log(entry, Object.keys(require(entry)).length > 0);\n`,
    );
    expect(await node(dir, ['use.cjs'])).toBe('flowcast true\nflowcast/client true\nflowcast/server true\nflowcast/redis true\n');
  });

  it('a file importing every entry point compiles under strict tsc with skipLibCheck false', async () => {
    writeFileSync(
      join(dir, 'all.ts'),
      `import * as core from 'flowcast';
import * as client from 'flowcast/client';
import * as server from 'flowcast/server';
import * as redis from 'flowcast/redis';
import type { ServerOptions } from 'flowcast/server';
import type { BullMQBrokerOptions } from 'flowcast/redis';
export const all = [core, client, server, redis];
export type Options = [ServerOptions, BullMQBrokerOptions];
`,
    );
    // `types: []`: no @types package is added implicitly; the entry points' own references bring Node's types.
    await typecheck(dir, ['all.ts'], []);
  }, 300_000);
});
