/**
 * Native TLS from certificate and key files (seed 000 §10.4 passes `ssl_cert` and
 * `ssl_key` as paths): `tls: { cert, key }` takes a path, PEM text or a Buffer, and a
 * file that cannot be read or holds no PEM is named in the error. A real self-signed
 * certificate made with openssl, a real server on port 0, clients that verify it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getWebSocketServer } from '../src/server/index.js';
import { onCleanup, startFixture, type Fixture } from './helpers/server-fixture.js';
import { isEvent } from './helpers/ws-client.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** A self-signed certificate for 127.0.0.1 and localhost, as files in a fresh folder. */
function makeCertificate(): { dir: string; certPath: string; keyPath: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'flowcast-tls-files-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { stdio: 'ignore' },
  );
  return { dir, certPath, keyPath, cert: readFileSync(certPath, 'utf8') };
}

/** A wss:// client that trusts `ca` gets a run's events; https:// /health answers. */
async function servesOverTls(f: Fixture, ca: string): Promise<void> {
  expect(f.server.url).toMatch(/^wss:\/\//);
  const client = await f.client({ ws: { ca } });
  await client.subscribe({ pipeline_id: 'alpha' });
  const runId = await f.runToEnd(f.alpha);
  await client.waitForEnd(runId);
  expect(client.messages.filter(isEvent).filter((e) => e.run_id === runId)).toHaveLength(6);
  const status = await new Promise<number>((resolve, reject) => {
    httpsGet(`${f.server.httpUrl}/health`, { ca }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
  expect(status).toBe(200);
}

describe('tls: { cert, key } from files (seed 000 §10.4)', () => {
  it.skipIf(!hasOpenssl)('serves wss:// and https:// from certificate and key paths, as the seed passes them', async () => {
    const { certPath, keyPath, cert } = makeCertificate();
    await servesOverTls(await startFixture({ server: { tls: { cert: certPath, key: keyPath } } }), cert);
  });

  it.skipIf(!hasOpenssl)('still takes PEM text and Buffers', async () => {
    const { certPath, keyPath, cert } = makeCertificate();
    await servesOverTls(await startFixture({ server: { tls: { cert: readFileSync(certPath), key: readFileSync(keyPath) } } }), cert);
    await servesOverTls(await startFixture({ server: { tls: { cert, key: readFileSync(keyPath, 'utf8') } } }), cert);
  });

  it.skipIf(!hasOpenssl)('names the file that cannot be read, or that holds no PEM, instead of OpenSSL\'s "no start line"', () => {
    const { dir, certPath, keyPath } = makeCertificate();
    const missing = join(dir, 'missing-key.pem');
    expect(() => getWebSocketServer({ port: 0, tls: { cert: certPath, key: missing } })).toThrow(
      new RegExp(`tls\\.key: cannot read the file ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*ENOENT`),
    );
    const notPem = join(dir, 'notes.txt');
    writeFileSync(notPem, 'this is not a certificate\n');
    expect(() => getWebSocketServer({ port: 0, tls: { cert: notPem, key: keyPath } })).toThrow(`tls.cert: the file ${notPem} holds no PEM certificate (no "-----BEGIN" line)`);
    // Certificate and key swapped: OpenSSL's complaint, with where each came from.
    expect(() => getWebSocketServer({ port: 0, tls: { cert: keyPath, key: certPath } })).toThrow(/tls: the certificate \(file .*key\.pem\) and key \(file .*cert\.pem\) cannot be used: /);
    expect(() => getWebSocketServer({ port: 0, tls: { cert: 42, key: keyPath } as never })).toThrow('tls.cert must be a file path, PEM text or a Buffer, received 42');
    expect(() => getWebSocketServer({ port: 0, tls: certPath as never })).toThrow(/tls must be an object \{ cert, key \}/);
  });
});
