/**
 * `flowcast/client` as people arrive with it: seed 000 §4.1's
 * `new PipelineMonitor(url, pipelineId)`, and Node 20 (no global WebSocket), where the
 * monitor takes the `ws` package when it is installed and says to install it when it is
 * not; docs/client.md's first example runs as printed there. The browser bundle stays
 * free of `ws`. Real server on port 0, real sockets, child processes for a Node without
 * a global WebSocket.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCodes, MonitorError, PipelineMonitor, type FlowcastEvent, type StateChange } from '../src/client/index.js';
import { waitUntil } from './helpers/collect.js';
import { onCleanup, startFixture } from './helpers/server-fixture.js';

vi.setConfig({ testTimeout: 60_000 });

const root = join(import.meta.dirname, '..');
const clientEntry = join(root, 'src/client/index.ts');
/** Node flags that take the global WebSocket away where Node has one (22+): the Node 20 situation on any Node. */
const NO_GLOBAL_WEBSOCKET = Number(process.versions.node.split('.')[0]) >= 22 ? ['--no-experimental-websocket'] : [];

function monitorAfterTest(monitor: PipelineMonitor): PipelineMonitor {
  onCleanup(() => monitor.close());
  return monitor;
}

describe('new PipelineMonitor(url, pipelineId) (seed 000 §4.1)', () => {
  it('follows the pipeline given as the second argument once connect() is called, with nothing else passed', async () => {
    const f = await startFixture();
    // As the seed writes it: no options, no WebSocket class (Node 20 has no global one).
    const monitor = monitorAfterTest(new PipelineMonitor(f.server.url, 'alpha'));
    const steps: string[] = [];
    const done: FlowcastEvent[] = [];
    const pipelines = new Set<string>();
    monitor.on('StepCompleteEvent', (event) => steps.push(`${event.step_name} in ${event.duration_ms}ms`));
    monitor.on('PipelineCompleteEvent', (event) => done.push(event));
    monitor.on('*', (event) => pipelines.add(event.pipeline_id));
    void monitor.connect();
    // Runs until one is seen whole: the subscription the second argument asked for reached the server.
    const runs: string[] = [];
    await waitUntil(() => monitor.state === 'open', 'the monitor open', 10_000);
    for (let i = 0; i < 100 && done.length === 0; i++) {
      runs.push(await f.runToEnd(f.alpha));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(done).toHaveLength(1);
    expect(runs).toContain(done[0]?.run_id);
    // From then on every alpha run, and nothing of beta.
    await f.runToEnd(f.beta);
    const runId = await f.runToEnd(f.alpha);
    await waitUntil(() => done.length === 2, 'the second PipelineCompleteEvent', 10_000);
    expect(done[1]).toMatchObject({ run_id: runId, pipeline_id: 'alpha', status: 'COMPLETED' });
    expect([...pipelines]).toEqual(['alpha']);
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(monitor.lastSeq(runId)).toBe((await f.log(runId)).length);
  });

  it('takes options as the third argument, and reports a refused pipeline on "error"', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { k: { id: 'k', pipelines: ['alpha'] } } } } });
    const monitor = monitorAfterTest(new PipelineMonitor(f.server.url, 'beta', { token: 'k', reconnect: false }));
    const errors: Error[] = [];
    monitor.on('error', (error) => errors.push(error));
    await monitor.connect();
    await waitUntil(() => errors.length === 1, 'the refusal', 10_000);
    expect(errors[0]).toBeInstanceOf(MonitorError);
    expect(errors[0]).toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, serverCode: 'forbidden' });
    expect(errors[0]?.message).toContain('subscribe("beta") rejected');
  });

  it('checks the positional form like the rest', () => {
    expect(() => new PipelineMonitor('ws://127.0.0.1:1', '')).toThrow('PipelineMonitor(url, pipelineId): pipelineId must be');
    expect(() => new PipelineMonitor('ws://127.0.0.1:1', 'bad id!')).toThrow('PipelineMonitor(url, pipelineId): pipelineId must be');
    const Untyped = PipelineMonitor as unknown as new (...args: unknown[]) => PipelineMonitor;
    expect(() => new Untyped('ws://127.0.0.1:1', {}, {})).toThrow('PipelineMonitor(url, options): a third argument is taken only after a pipeline id, received {}');
    expect(() => new PipelineMonitor('ws://127.0.0.1:1', 'p', { tokne: 'x' } as never)).toThrow('PipelineMonitor options has an unknown option "tokne"');
    expect(new PipelineMonitor('ws://127.0.0.1:1', '*').stats.subscriptions).toBe(1);
  });
});

describe('flowcast/client on Node without a global WebSocket (Node 20)', () => {
  it("docs/client.md's first example runs as printed, using the ws package", async () => {
    const doc = readFileSync(join(root, 'docs/client.md'), 'utf8');
    const example = /```ts\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
    expect(example).toContain("new PipelineMonitor(process.env.FLOWCAST_URL ?? 'ws://localhost:8765'");
    expect(example).not.toMatch(/WebSocket/);
    const f = await startFixture({ server: { auth: { apiKeys: { 'my-api-key': { id: 'doc' } } } } });
    // Only the address differs: this server's port instead of 8765; and the pipeline is `alpha`.
    const script = example
      .replace("from 'flowcast/client'", `from ${JSON.stringify(clientEntry)}`)
      .replace('ws://localhost:8765', f.server.url)
      .replace("'demo_workflow'", "'alpha'");
    const dir = mkdtempSync(join(root, '.tmp-client-doc-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'example.mts');
    writeFileSync(file, `${script}\nconsole.log('subscribed');\n`);
    let stdout = '';
    let stderr = '';
    const child = execFile(process.execPath, [...NO_GLOBAL_WEBSOCKET, '--import', 'tsx', file], { cwd: root });
    onCleanup(() => {
      child.kill('SIGKILL');
    });
    child.stdout?.on('data', (s: string) => (stdout += s));
    child.stderr?.on('data', (s: string) => (stderr += s));
    await waitUntil(() => stdout.includes('subscribed') || child.exitCode !== null, 'the example subscribed', 30_000);
    expect(stderr).toBe('');
    const runId = await f.runToEnd(f.alpha);
    await waitUntil(() => stdout.includes('finished: COMPLETED'), `the example printing the end of ${runId}`, 10_000);
    expect(stdout).toMatch(/inc took [\d.]+ms/);
  });

  it('says to install the ws package when it is not installed (a bundle run outside any node_modules)', async () => {
    const f = await startFixture();
    const dir = mkdtempSync(join(tmpdir(), 'flowcast-client-no-ws-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    await build({ entryPoints: [clientEntry], bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: join(dir, 'client.mjs'), logLevel: 'silent' });
    writeFileSync(
      join(dir, 'main.mjs'),
      `import { PipelineMonitor } from './client.mjs';
const monitor = new PipelineMonitor(${JSON.stringify(f.server.url)}, 'alpha');
const states = [];
monitor.on('state', (s) => states.push(s.to));
monitor.on('error', () => {});
try {
  await monitor.connect();
  console.log('connected');
} catch (error) {
  console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message, state: monitor.state, states }));
}
`,
    );
    const { stdout } = await promisify(execFile)(process.execPath, [...NO_GLOBAL_WEBSOCKET, join(dir, 'main.mjs')], { cwd: dir, timeout: 30_000 });
    const result = JSON.parse(stdout) as { name: string; code: string; message: string; state: string; states: StateChange['to'][] };
    expect(result.name).toBe('MonitorError');
    expect(result.code).toBe(ErrorCodes.CONNECTION_FAILED);
    expect(result.message).toContain('no global WebSocket');
    expect(result.message).toContain('install the "ws" package (npm install ws)');
    expect(result.message).toContain('{ WebSocket }');
    // No retry: installing a package is not something a reconnect can wait for.
    expect(result.state).toBe('closed');
    expect(result.states).toEqual(['connecting', 'closed']);
  });

  it('keeps ws out of the browser bundle: the package is loaded by a dynamic import left to the runtime', async () => {
    const result = await build({ entryPoints: [clientEntry], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent', metafile: true });
    const code = result.outputFiles[0]?.text ?? '';
    expect(Object.keys(result.metafile.inputs).filter((input) => input.includes('node_modules'))).toEqual([]);
    expect(code).not.toMatch(/permessage-deflate|Sec-WebSocket-Key|\bfrom\s*["']node:/);
    expect(code).toMatch(/import\(\s*(\/\*[^*]*\*\/\s*)*\w+\s*\)/);
  });
});
