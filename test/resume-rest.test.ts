/**
 * Resume through REST, the SDK and the CLI on the in-memory broker:
 * `POST /api/runs/{run_id}/resume` answers 202 with the run, which goes on as a new
 * attempt (step 1 not called again, the log continues gapless with a
 * PipelineResumeEvent); a RUNNING or COMPLETED run answers 409 `run_not_resumable`; an
 * unknown or unreadable run 404; the `resume` right is needed; `/actions` says so;
 * `resumeRun()` and `flowcast resume PREFIX --watch` (exit 0 / 1) do the same.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { ErrorCodes } from '../src/core/errors.js';
import type { FlowcastEvent } from '../src/events/types.js';
import { getEngine } from '../src/pipeline/engine.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../src/tracking/index.js';
import { getWebSocketServer } from '../src/server/index.js';
import type { ServerOptions } from '../src/server/options.js';
import { ResumeRunError, resumeRun } from '../src/client/index.js';
import { flowcast } from './helpers/cli.js';
import { untilAborted } from './helpers/collect.js';
import { calls, resumePipelines } from './fixtures/resume/pipelines.js';

type Json = Record<string, unknown>;
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function post(base: string, path: string, token?: string): Promise<{ status: number; body: Json; location: string | null }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method: 'POST', headers });
  return { status: res.status, body: (await res.json()) as Json, location: res.headers.get('location') };
}

async function get(base: string, path: string, token?: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(base + path, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Json };
}

function failingDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-resume-rest-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'fail'), '');
  return dir;
}

async function setup(server: Partial<ServerOptions> = {}) {
  const broker = new InMemoryBroker({ onError: () => undefined });
  const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage());
  const { sequential, dag } = resumePipelines(broker);
  sequential.withTracking(tracking);
  dag.withTracking(tracking);
  const hold = broker.task<null, string>('rs_hold', async (_input, ctx) => untilAborted(ctx.signal));
  const holding = new Pipeline(broker, { id: 'resume_hold' }).callNext(hold).withTracking(tracking);
  const s = getWebSocketServer({ port: 0, broker, tracking, restRateLimit: false, pipelines: [sequential, dag], ...server });
  cleanups.push(() => broker.close(), () => s.close());
  await s.startServer();
  return { broker, server: s, sequential, dag, holding };
}

async function failedRun(p: Pipeline, dir: string): Promise<string> {
  const run = await p.kiq({ dir });
  await run.waitResult().catch(() => undefined);
  return run.runId;
}

async function ended(broker: InMemoryBroker, runId: string): Promise<string> {
  await getEngine(broker).waitForRun(runId, 20_000).catch(() => undefined);
  return (await broker.runState.getSummary(runId))?.status ?? 'unknown';
}

describe('POST /api/runs/:run_id/resume', () => {
  it('answers 202 with the run, which completes without running step 1 again; its events continue the log', async () => {
    const { broker, server, sequential } = await setup();
    const dir = failingDir();
    const runId = await failedRun(sequential, dir);
    const before = (await get(server.httpUrl, `/api/runs/${runId}/events`)).body.events as FlowcastEvent[];
    expect((await get(server.httpUrl, `/api/runs/${runId}/actions`)).body).toMatchObject({ resume: true });
    unlinkSync(join(dir, 'fail'));
    const res = await post(server.httpUrl, `/api/runs/${runId}/resume`);
    expect(res.status).toBe(202);
    expect(res.location).toBe(`/api/runs/${runId}`);
    expect(res.body).toEqual({ run_id: runId, pipeline_id: 'resume_seq', status: 'RUNNING', attempt: 2, kept_steps: ['rs_fetch'], pending_steps: ['rs_flaky', 'rs_save'], seq: before.length + 1 });
    expect(await ended(broker, runId)).toBe('COMPLETED');
    expect(calls(dir, 'rs_fetch')).toBe(1);
    const events = (await get(server.httpUrl, `/api/runs/${runId}/events`)).body.events as FlowcastEvent[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events[before.length]).toMatchObject({ type: 'PipelineResumeEvent', previous_status: 'FAILED' });
    expect(events[events.length - 1]?.type).toBe('PipelineCompleteEvent');
    const status = (await get(server.httpUrl, `/api/runs/${runId}`)).body;
    expect(status).toMatchObject({ status: 'COMPLETED', result: 'saved 6' });
    expect((await get(server.httpUrl, `/api/runs/${runId}/actions`)).body).toMatchObject({ resume: false });

    // A COMPLETED run: 409 with the documented body.
    const again = await post(server.httpUrl, `/api/runs/${runId}/resume`);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'run_not_resumable', status: 'COMPLETED' });
    expect((again.body.error as Json).message).toMatch(/COMPLETED/);
  });

  it('answers 409 for a RUNNING run, 404 for an unknown one, and needs the resume right (404 for a run the caller cannot read)', async () => {
    const auth = {
      apiKeys: {
        reader: { id: 'reader', pipelines: '*' as const },
        resumer: { id: 'resumer', pipelines: ['resume_seq', 'resume_hold'], actions: ['resume' as const] },
      },
    };
    const { server, sequential, holding } = await setup({ auth });
    const running = await holding.kiq(null);
    const busy = await post(server.httpUrl, `/api/runs/${running.runId}/resume`, 'resumer');
    expect(busy.status).toBe(409);
    expect(busy.body.error).toMatchObject({ code: 'run_not_resumable', status: 'RUNNING' });
    const unknown = await post(server.httpUrl, '/api/runs/no-such-run/resume', 'resumer');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'run_not_found' });
    expect((await post(server.httpUrl, `/api/runs/${running.runId}/resume`)).status).toBe(401);
    const dir = failingDir();
    const runId = await failedRun(sequential, dir);
    const forbidden = await post(server.httpUrl, `/api/runs/${runId}/resume`, 'reader');
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error).toMatchObject({ code: 'forbidden' });
    expect((await get(server.httpUrl, `/api/runs/${runId}/actions`, 'reader')).body).toMatchObject({ resume: false });
    expect((await get(server.httpUrl, `/api/runs/${runId}/actions`, 'resumer')).body).toMatchObject({ resume: true });
    const ok = await post(server.httpUrl, `/api/runs/${runId}/resume`, 'resumer');
    expect(ok.status).toBe(202);
    await running.cancel();
  });

  it('hides runs of pipelines the caller may not read behind 404', async () => {
    const auth = { apiKeys: { other: { id: 'other', pipelines: ['resume_dag'], actions: ['resume' as const] } } };
    const { server, sequential } = await setup({ auth });
    const runId = await failedRun(sequential, failingDir());
    const hidden = await post(server.httpUrl, `/api/runs/${runId}/resume`, 'other');
    expect(hidden.status).toBe(404);
    expect(hidden.body.error).toMatchObject({ code: 'run_not_found' });
  });

  it('is in the OpenAPI document with its 202 and 409 answers', async () => {
    const { server } = await setup();
    const doc = (await get(server.httpUrl, '/api/openapi.json')).body as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    const op = doc.paths['/api/runs/{run_id}/resume']?.post;
    expect(op).toBeDefined();
    expect(Object.keys(op?.responses ?? {})).toEqual(expect.arrayContaining(['202', '404', '409']));
  });
});

describe('resumeRun() and flowcast resume', () => {
  it('resumes through the SDK, and refuses a completed run with RUN_NOT_RESUMABLE', async () => {
    const { broker, server, dag } = await setup();
    const dir = failingDir();
    const runId = await failedRun(dag as unknown as Pipeline, dir);
    unlinkSync(join(dir, 'fail'));
    const run = await resumeRun(runId, { url: server.url });
    expect(run).toMatchObject({ run_id: runId, pipeline_id: 'resume_dag', attempt: 2, kept_steps: ['a', 'c'], pending_steps: ['b', 'd'] });
    expect(await ended(broker, runId)).toBe('COMPLETED');
    expect(calls(dir, 'rs_a')).toBe(1);
    const refused = await resumeRun(runId, { url: server.httpUrl }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ResumeRunError);
    expect(refused).toMatchObject({ code: ErrorCodes.RUN_NOT_RESUMABLE, status: 409, serverCode: 'run_not_resumable', runStatus: 'COMPLETED' });
    await expect(resumeRun('no-such-run', { url: server.httpUrl })).rejects.toMatchObject({ code: ErrorCodes.REQUEST_REJECTED, status: 404 });
  });

  it('flowcast resume PREFIX --watch exits 0 when the run completes, 1 when it fails again or cannot be resumed', async () => {
    const { broker, server, sequential } = await setup();
    const dir = failingDir();
    const runId = await failedRun(sequential, dir);
    // Fails again: exit 1, and the watch shows the new attempt only.
    const failing = flowcast(['resume', runId.slice(0, 8), '--url', server.url, '--watch', '--json']);
    expect((await failing.exited).code, failing.stdout() + failing.stderr()).toBe(1);
    const lines = failing.stdout().trim().split('\n').map((l) => JSON.parse(l) as Json);
    expect(lines[0]).toMatchObject({ type: 'resumed', run_id: runId, attempt: 2 });
    expect(lines[1]).toMatchObject({ type: 'PipelineResumeEvent', attempt: 2 });
    expect(lines.some((l) => l.type === 'PipelineStartEvent')).toBe(false);
    expect(lines[lines.length - 1]).toMatchObject({ type: 'PipelineErrorEvent' });
    unlinkSync(join(dir, 'fail'));
    const ok = flowcast(['resume', runId.slice(0, 8), '--url', server.url, '--watch']);
    expect((await ok.exited).code).toBe(0);
    expect(ok.stdout()).toContain('attempt 3');
    expect(await ended(broker, runId)).toBe('COMPLETED');
    expect(calls(dir, 'rs_fetch')).toBe(1);
    const done = flowcast(['resume', runId, '--url', server.url]);
    expect((await done.exited).code).toBe(1);
    expect(done.stderr()).toMatch(/COMPLETED/);
    const usage = flowcast(['resume', '--url', server.url]);
    expect((await usage.exited).code).toBe(2);
    const help = flowcast(['resume', '--help']);
    expect((await help.exited).code).toBe(0);
    expect(help.stdout()).toContain('flowcast resume 3f2a9c1d --watch');
  }, 240_000);
});
