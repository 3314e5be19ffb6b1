/**
 * Authorization fails closed (issue 12 items 1 and 7): a JWT whose `pipelines` claim is
 * malformed is refused everywhere (WebSocket 4001 naming the claim, REST and SSE 401);
 * a JWT without the claim reads nothing unless the server has a default scope; refused
 * tokens are throttled per address, on WebSocket too. Each "reads nothing" check runs
 * beside a client that does read, so it cannot pass because nothing was sent.
 */
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { CloseCodes, ProtocolErrors } from '../src/server/index.js';
import { serverOptionsFrom } from '../src/cli/commands/serve.js';
import { raw } from './helpers/http.js';
import { startFixture, type Fixture } from './helpers/server-fixture.js';
import { connect, connectRejected, isEvent } from './helpers/ws-client.js';

const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';

function jwt(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setSubject('user-1').sign(Buffer.from(SECRET));
}

function withJwt(jwtOptions: Record<string, unknown> = {}, more: Record<string, unknown> = {}): Promise<Fixture> {
  return startFixture({ server: { auth: { jwt: { secret: SECRET, ...jwtOptions } }, ...more } });
}

const MALFORMED: [string, unknown][] = [
  ['a string', 'alpha'],
  ['an array of numbers', [1, 2]],
  ['an object', { alpha: true }],
  ['null', null],
  ['a number', 7],
  ['a mixed array', ['alpha', 3]],
];

describe('a JWT whose pipelines claim is malformed', () => {
  it.each(MALFORMED)('(%s) is refused on WebSocket (4001 naming the claim), REST and SSE (401), and reads nothing', async (_what, claim) => {
    const f = await withJwt();
    const token = await jwt({ pipelines: claim });
    const ws = await connect(f.server.url, { queryToken: token });
    const closed = await ws.closed;
    expect(closed.code).toBe(CloseCodes.UNAUTHORIZED);
    expect(closed.reason).toMatch(/^Unauthorized: .*claim "pipelines"/);
    expect(ws.messages).toEqual([]);
    const rest = await raw(f.server.httpUrl, '/api/runs', { headers: { authorization: `Bearer ${token}` } });
    expect(rest.status).toBe(401);
    expect(rest.error?.message).toContain('claim "pipelines"');
    const sse = await raw(f.server.httpUrl, `/api/events?pipeline_id=*&token=${token}`);
    expect(sse.status).toBe(401);
    expect(sse.error?.message).toContain('claim "pipelines"');
    // The same server lets a well-formed token read.
    const good = await connect(f.server.url, { queryToken: await jwt({ pipelines: ['alpha'] }) });
    await good.subscribe({ pipeline_id: 'alpha' });
    const runId = await f.runToEnd(f.alpha);
    await good.waitForEnd(runId);
    await good.close();
  });

  it('a malformed actions claim is refused too, and a custom claim name is the one checked', async () => {
    const f = await withJwt({ pipelinesClaim: 'scope' });
    const bad = await connect(f.server.url, { queryToken: await jwt({ scope: ['alpha'], actions: 'cancel' }) });
    expect((await bad.closed).reason).toContain('claim "actions"');
    const wrongClaim = await connect(f.server.url, { queryToken: await jwt({ scope: 'alpha' }) });
    expect((await wrongClaim.closed).reason).toContain('claim "scope"');
  });
});

describe('a JWT without a pipelines claim', () => {
  it('reads nothing by default: every pipeline forbidden, "*" carries nothing, REST lists are empty', async () => {
    const f = await withJwt();
    const none = await f.client({ queryToken: await jwt({}) });
    const all = await f.client({ queryToken: await jwt({ pipelines: '*' }) });
    expect(await none.request({ type: 'subscribe', pipeline_id: 'alpha' })).toMatchObject({ type: 'error', code: ProtocolErrors.FORBIDDEN });
    await none.subscribe({ pipeline_id: '*' });
    await all.subscribe({ pipeline_id: '*' });
    const runId = await f.runToEnd(f.alpha);
    await all.waitForEnd(runId);
    expect(all.events(runId)).toHaveLength(6);
    expect(none.messages.filter(isEvent)).toEqual([]);
    const list = await raw(f.server.httpUrl, '/api/runs', { headers: { authorization: `Bearer ${await jwt({})}` } });
    expect(list.status).toBe(200);
    expect((JSON.parse(list.text) as { runs: unknown[] }).runs).toEqual([]);
    const one = await raw(f.server.httpUrl, `/api/runs/${runId}`, { headers: { authorization: `Bearer ${await jwt({})}` } });
    expect(one.status).toBe(404);
  });

  it('reads the default scope when the server sets one (auth.jwt.defaultPipelines, CLI --jwt-default-pipelines)', async () => {
    const f = await withJwt({ defaultPipelines: ['alpha'] });
    const client = await f.client({ queryToken: await jwt({}) });
    await client.subscribe({ pipeline_id: 'alpha' });
    expect(await client.request({ type: 'subscribe', pipeline_id: 'beta' })).toMatchObject({ type: 'error', code: ProtocolErrors.FORBIDDEN });
    const runId = await f.runToEnd(f.alpha);
    await client.waitForEnd(runId);
    expect(serverOptionsFrom({ jwtSecret: SECRET, jwtDefaultPipelines: 'alpha, beta' }, {}).auth?.jwt?.defaultPipelines).toEqual(['alpha', 'beta']);
    expect(serverOptionsFrom({ jwtSecret: SECRET, jwtDefaultPipelines: '*' }, {}).auth?.jwt?.defaultPipelines).toBe('*');
    expect(serverOptionsFrom({ jwtSecret: SECRET }, {}).auth?.jwt?.defaultPipelines).toBeUndefined();
    expect(() => serverOptionsFrom({ jwtDefaultPipelines: '*' }, {})).toThrow(/needs --jwt-secret/);
    await expect(withJwt({ defaultPipelines: 'alpha' })).rejects.toThrow(/defaultPipelines must be "\*" or an array/);
  });
});

describe('refused tokens, throttled per address', () => {
  it('past authFailures.max refused WebSocket tokens an address gets 429 (a good token too) while another address gets in', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { good: { id: 'ops' } } }, authFailures: { max: 5, windowMs: 60_000 } } });
    for (let i = 0; i < 5; i++) {
      const c = await connect(f.server.url, { queryToken: `guess-${i}` });
      expect((await c.closed).code).toBe(CloseCodes.UNAUTHORIZED);
    }
    expect(await connectRejected(f.server.url, { queryToken: 'guess-6' })).toBe(429);
    expect(await connectRejected(f.server.url, { queryToken: 'good' })).toBe(429);
    const rest = await raw(f.server.httpUrl, '/api/runs?token=good');
    expect(rest.status).toBe(429);
    expect(rest.headers['retry-after']).toMatch(/^\d+$/);
    expect(rest.error?.message).toMatch(/Too many refused tokens/);
    // Another client (127.0.0.2 is another address on Linux loopback) is not affected.
    const other = await connect(f.server.url, { queryToken: 'good', ws: { localAddress: '127.0.0.2' } });
    await other.subscribe({ pipeline_id: 'alpha' });
    await other.close();
  });

  it('REST and SSE 401s count against the same budget', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { good: { id: 'ops' } } }, authFailures: { max: 3, windowMs: 60_000 } } });
    expect((await raw(f.server.httpUrl, '/api/runs?token=x1')).status).toBe(401);
    expect((await raw(f.server.httpUrl, '/api/events?pipeline_id=*&token=x2')).status).toBe(401);
    expect((await raw(f.server.httpUrl, '/api/runs', { headers: { authorization: 'Bearer x3' } })).status).toBe(401);
    expect((await raw(f.server.httpUrl, '/api/runs?token=good')).status).toBe(429);
    expect(await connectRejected(f.server.url, { queryToken: 'good' })).toBe(429);
  });
});
