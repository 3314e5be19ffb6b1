/**
 * The auth matrix (issue 3 item 5, seed 000 §10.1-10.2): API keys, HS256 and RS256 JWTs
 * (signed here with jose, keys made with node:crypto), the three places a token can be
 * sent, and what a principal may read. A rejected connection is closed 4001
 * "Unauthorized" before any message; a forbidden pipeline never leaks an event, `*`
 * included. Each "nothing leaked" check runs next to a client with full rights that does
 * get the events, so the check cannot pass because nothing was sent at all.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import type { RunHandle } from '../src/index.js';
import { CloseCodes, ProtocolErrors, type AuthOptions } from '../src/server/index.js';
import { logHolds, startFixture, type Fixture } from './helpers/server-fixture.js';
import { connect, isEvent, type ConnectOptions, type TestClient } from './helpers/ws-client.js';

const SECRET = 'a-test-secret-that-is-long-enough-for-hs256';

const API_KEYS: NonNullable<AuthOptions['apiKeys']> = {
  'key-all': { id: 'ops' },
  'key-alpha': { id: 'alpha-team', pipelines: ['alpha'] },
  'key-none': { id: 'nobody', pipelines: [] },
};

function hs256(claims: Record<string, unknown>, options: { expiresAt?: number; secret?: string } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setSubject('user-1');
  if (options.expiresAt !== undefined) jwt.setExpirationTime(options.expiresAt);
  return jwt.sign(Buffer.from(options.secret ?? SECRET));
}

function rs256(claims: Record<string, unknown>, key: KeyObject, options: { expiresAt?: number } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setIssuedAt().setSubject('user-2');
  if (options.expiresAt !== undefined) jwt.setExpirationTime(options.expiresAt);
  return jwt.sign(key);
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** A fixture with API keys and HS256 JWTs. */
function secured(): Promise<Fixture> {
  return startFixture({ server: { auth: { apiKeys: API_KEYS, jwt: { secret: SECRET } } } });
}

/**
 * Connects with `options`, subscribes at once to alpha (the message waits while the
 * token is checked), runs alpha, and asserts the connection was closed 4001
 * "Unauthorized" with no message at all.
 */
async function expectRejected(f: Fixture, options: ConnectOptions): Promise<void> {
  const client = await connect(f.server.url, options);
  client.send({ type: 'subscribe', pipeline_id: 'alpha' });
  client.send({ type: 'subscribe', pipeline_id: '*' });
  const closed = await client.waitForClose();
  expect(closed).toEqual({ code: CloseCodes.UNAUTHORIZED, reason: 'Unauthorized' });
  await f.runToEnd(f.alpha);
  expect(client.messages).toEqual([]);
}

/** Subscribes, runs alpha, and asserts every event of the run arrived. */
async function expectReads(f: Fixture, client: TestClient, pipelineId = 'alpha'): Promise<void> {
  await client.subscribe({ pipeline_id: pipelineId });
  const runId = await f.runToEnd(f.alpha);
  await client.waitForEnd(runId);
  expect(client.events(runId)).toEqual(await f.log(runId));
}

describe('rejected connections: closed 4001 "Unauthorized" before any message', () => {
  it('no token', async () => {
    const f = await secured();
    await expectRejected(f, {});
  });

  it.each([
    ['an unknown API key', 'key-unknown'],
    ['a near miss of a key', 'key-all '],
    ['an own-property name of objects', '__proto__'],
    ['another one', 'constructor'],
    ['garbage', '%%%'],
    ['a malformed JWT', 'eyJhbGciOiJIUzI1NiJ9.e30'],
  ])('a bad token: %s', async (_name, token) => {
    const f = await secured();
    await expectRejected(f, { queryToken: token });
  });

  it('an expired HS256 JWT', async () => {
    const f = await secured();
    await expectRejected(f, { headerToken: await hs256({}, { expiresAt: nowS() - 60 }) });
  });

  it('a JWT signed with another secret', async () => {
    const f = await secured();
    await expectRejected(f, { headerToken: await hs256({}, { secret: 'not-the-server-secret-not-the-server' }) });
  });

  it('an empty Authorization bearer and an empty ?token=', async () => {
    const f = await secured();
    await expectRejected(f, { ws: { headers: { authorization: 'Bearer ' } } });
    await expectRejected(f, { path: '/?token=' });
  });

  it('the same over /ws', async () => {
    const f = await secured();
    await expectRejected(f, { path: '/ws' });
    await expectRejected(f, { path: '/ws', queryToken: 'nope' });
  });
});

describe('accepted tokens', () => {
  it('?token=, Authorization: Bearer and the subprotocol flowcast.bearer.<token> (offered with flowcast) are all accepted', async () => {
    const f = await secured();
    const byQuery = await f.client({ queryToken: 'key-all' });
    await expectReads(f, byQuery);
    const byHeader = await f.client({ headerToken: 'key-all' });
    await expectReads(f, byHeader);
    const byProtocol = await f.client({ protocolToken: 'key-all' });
    // The server picks "flowcast": the token is never echoed back as the protocol.
    expect(byProtocol.ws.protocol).toBe('flowcast');
    await expectReads(f, byProtocol);
  });

  it('an HS256 JWT, in each place', async () => {
    const f = await secured();
    const token = await hs256({ pipelines: '*' }, { expiresAt: nowS() + 600 });
    await expectReads(f, await f.client({ queryToken: token }));
    await expectReads(f, await f.client({ headerToken: token }));
    await expectReads(f, await f.client({ protocolToken: token }));
  });

  it('/ws takes the same tokens', async () => {
    const f = await secured();
    await expectReads(f, await f.client({ path: '/ws', protocolToken: 'key-all' }));
  });
});

describe('RS256', () => {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = pair.publicKey.export({ type: 'spki', format: 'pem' }).toString();

  function rsServer(): Promise<Fixture> {
    return startFixture({ server: { auth: { jwt: { publicKey: publicPem } } } });
  }

  it('a token signed with the private key is accepted; its pipelines claim limits what it reads', async () => {
    const f = await rsServer();
    const all = await f.client({ headerToken: await rs256({ pipelines: '*' }, pair.privateKey, { expiresAt: nowS() + 600 }) });
    await expectReads(f, all, '*');
    const limited = await f.client({ protocolToken: await rs256({ pipelines: ['beta'] }, pair.privateKey) });
    expect(await limited.request({ type: 'subscribe', pipeline_id: 'alpha' })).toMatchObject({ type: 'error', code: ProtocolErrors.FORBIDDEN });
  });

  it('rejected: expired, signed with another key, an HS256 token (algorithm confusion), no token', async () => {
    const f = await rsServer();
    await expectRejected(f, { headerToken: await rs256({}, pair.privateKey, { expiresAt: nowS() - 60 }) });
    await expectRejected(f, { headerToken: await rs256({}, other.privateKey) });
    await expectRejected(f, { headerToken: await hs256({}, { secret: publicPem }) });
    await expectRejected(f, {});
  });
});

describe('authorisation', () => {
  it('a forbidden pipeline: error forbidden, and never an event of it, while a client with rights gets them all', async () => {
    const f = await secured();
    const limited = await f.client({ queryToken: 'key-alpha' });
    const reply = await limited.request({ type: 'subscribe', pipeline_id: 'beta' });
    expect(reply).toMatchObject({ type: 'error', code: ProtocolErrors.FORBIDDEN });
    expect(reply.message).toContain('beta');
    await limited.subscribe({ pipeline_id: 'alpha' });
    const full = await f.client({ queryToken: 'key-all' });
    await full.subscribe({ pipeline_id: 'beta' });
    const betaRuns: string[] = [];
    for (let i = 0; i < 10; i++) betaRuns.push(await f.runToEnd(f.beta, i));
    const sentinel = await f.runToEnd(f.alpha);
    await limited.waitForEnd(sentinel);
    for (const runId of betaRuns) await full.waitForEnd(runId);
    expect(full.events().filter((e) => e.pipeline_id === 'beta')).toHaveLength(60);
    expect(limited.messages.filter((m) => m.pipeline_id === 'beta' || betaRuns.includes(m.run_id as string)).filter((m) => m.type !== 'error')).toEqual([]);
  });

  it('a principal that reads nothing gets forbidden for every pipeline, and "*" carries nothing', async () => {
    const f = await secured();
    const none = await f.client({ queryToken: 'key-none' });
    for (const p of ['alpha', 'beta', 'gated']) expect(await none.request({ type: 'subscribe', pipeline_id: p })).toMatchObject({ code: ProtocolErrors.FORBIDDEN });
    await none.subscribe({ pipeline_id: '*' });
    const full = await f.client({ queryToken: 'key-all' });
    await full.subscribe({ pipeline_id: '*' });
    const a = await f.runToEnd(f.alpha);
    const b = await f.runToEnd(f.beta);
    await full.waitForEnd(a);
    await full.waitForEnd(b);
    await none.request({ type: 'ping' });
    expect(none.events()).toEqual([]);
  });

  it('"*" with partial rights: every event of the allowed pipeline, zero of the other, over many interleaved runs', async () => {
    const f = await secured();
    const limited = await f.client({ headerToken: 'key-alpha' });
    await limited.subscribe({ pipeline_id: '*' });
    const jwtLimited = await f.client({ protocolToken: await hs256({ pipelines: ['alpha'] }) });
    await jwtLimited.subscribe({ pipeline_id: '*' });
    const full = await f.client({ headerToken: 'key-all' });
    await full.subscribe({ pipeline_id: '*' });
    const runs: RunHandle<number>[] = [];
    for (let round = 0; round < 10; round++) {
      runs.push(...(await Promise.all([f.alpha.kiq(round), f.beta.kiq(round), f.beta.kiq(round + 100), f.alpha.kiq(round + 100)])));
    }
    await Promise.all(runs.map((r) => r.waitResult({ timeoutMs: 10_000 })));
    // The sentinel: a last alpha run, after every beta run ended.
    const sentinel = await f.runToEnd(f.alpha, 999);
    for (const r of runs) await full.waitForEnd(r.runId);
    const alphaRuns = [...runs.map((r) => r.runId).filter((id) => full.events(id)[0]?.pipeline_id === 'alpha'), sentinel];
    const betaRuns = runs.map((r) => r.runId).filter((id) => full.events(id)[0]?.pipeline_id === 'beta');
    expect(alphaRuns).toHaveLength(21);
    expect(betaRuns).toHaveLength(20);
    for (const client of [limited, jwtLimited]) {
      for (const runId of alphaRuns) {
        await client.waitForEnd(runId);
        expect(client.events(runId)).toEqual(await f.log(runId));
      }
      expect(client.messages.filter((m) => m.pipeline_id === 'beta' || betaRuns.includes(m.run_id as string))).toEqual([]);
    }
    expect(full.events().filter((e) => e.pipeline_id === 'beta')).toHaveLength(20 * 6);
  });

  it('"*" late join with partial rights: no snapshot of a run of a pipeline it may not read', async () => {
    const f = await startFixture({ server: { auth: { apiKeys: { 'key-alpha': { id: 'a', pipelines: ['alpha'] }, 'key-all': { id: 'all' } } } } });
    const run = await f.startGated({ key: 'g', phases: [2, 2] });
    await logHolds(f, run.runId, 4);
    const limited = await f.client({ queryToken: 'key-alpha' });
    await limited.subscribe({ pipeline_id: '*' });
    const full = await f.client({ queryToken: 'key-all' });
    await full.subscribe({ pipeline_id: '*' });
    await full.waitFor((m) => m.type === 'snapshot', 'the snapshot of the gated run');
    f.open('g', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await full.waitForEnd(run.runId);
    const sentinel = await f.runToEnd(f.alpha);
    await limited.waitForEnd(sentinel);
    expect(limited.messages.filter((m) => m.run_id === run.runId || m.pipeline_id === 'gated')).toEqual([]);
  });

  it('a run_id of a forbidden pipeline\'s run answers exactly like a run that does not exist, then never a snapshot, replay or event, with or without since', async () => {
    const f = await secured();
    const run = await f.startGated({ key: 'g', phases: [3, 3] });
    await logHolds(f, run.runId, 5);
    const ended = await f.runToEnd(f.beta);
    const limited = await f.client({ queryToken: 'key-alpha' });
    const unknown = 'f0000000-0000-4000-8000-000000000000';
    // What the client gets for the run, with its id masked, and then for a run id no run has.
    const answers = async (client: TestClient, message: Record<string, unknown>): Promise<void> => {
      const mask = (runId: string, from: number): string[] =>
        client.messages.slice(from).map((m) => JSON.stringify({ ...m, id: undefined }).split(runId).join('RUN'));
      const from = client.messages.length;
      await client.subscribe(message);
      await client.request({ type: 'ping' });
      const forbidden = mask(message.run_id as string, from).filter((m) => !m.includes('pong'));
      const next = client.messages.length;
      await client.subscribe({ ...message, run_id: unknown });
      await client.request({ type: 'ping' });
      const missing = mask(unknown, next).filter((m) => !m.includes('pong'));
      expect(forbidden).toEqual(missing);
      expect(forbidden.join()).not.toContain('error');
    };
    await answers(limited, { run_id: run.runId });
    await answers(limited, { run_id: ended, since: 0 });
    await answers(limited, { run_id: ended });
    const limited2 = await f.client({ queryToken: 'key-alpha' });
    await answers(limited2, { run_id: run.runId, since: 2 });
    const full = await f.client({ queryToken: 'key-all' });
    await full.subscribe({ run_id: run.runId, since: 0 });
    f.open('g', 0);
    await run.waitResult({ timeoutMs: 10_000 });
    await full.waitForEnd(run.runId);
    expect(full.events(run.runId)).toEqual(await f.log(run.runId));
    for (const client of [limited, limited2]) {
      await client.request({ type: 'ping' });
      await client.subscribe({ pipeline_id: 'alpha' });
      const sentinel = await f.runToEnd(f.alpha);
      await client.waitForEnd(sentinel);
      expect(client.messages.filter((m) => isEvent(m) && (m.run_id === run.runId || m.run_id === ended))).toEqual([]);
      expect(client.controls('snapshot')).toEqual([]);
      // Not even how far the run got: a replay_complete says back the client's own seq, as for a run that does not exist.
      for (const done of client.controls('replay_complete').filter((m) => m.run_id === run.runId || m.run_id === ended)) expect(done.last_seq).toBeLessThanOrEqual(2);
      expect(client.controls('replay_incomplete')).toEqual([]);
    }
  });
});
