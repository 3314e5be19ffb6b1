/**
 * docker-compose.yml cannot run here (no Docker daemon in the test environment), so this
 * checks what it promises: a Node image that `engines` supports, health checks on Redis,
 * the workers and the servers, a token that must be set, and a .dockerignore.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const compose = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
const engines = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;

/** The block of one service: its lines up to the next service or top-level key. */
function service(name: string): string {
  const match = new RegExp(`^  ${name}:\\n((?:    .*\\n|\\n)+)`, 'm').exec(compose);
  if (match === null) throw new Error(`no service ${name} in docker-compose.yml`);
  return match[1]!;
}

describe('docker-compose.yml', () => {
  it('builds on a Node major that engines supports', () => {
    const images = [...compose.matchAll(/FROM node:(\d+)-/g)].map((m) => m[1]);
    expect(images.length).toBeGreaterThan(0);
    const majors = [...engines.matchAll(/(?:\^|>=)(\d+)/g)].map((m) => m[1]);
    for (const image of images) expect(majors, `node:${image} against engines "${engines}"`).toContain(image);
  });

  it('has health checks on redis (ping), the workers and the servers (/health)', () => {
    expect(service('redis')).toMatch(/healthcheck:\n\s+test: \["CMD", "redis-cli", "ping"\]/);
    expect(service('worker')).toMatch(/healthcheck:\n\s+test: .*\/health/);
    expect(service('worker')).toContain('--metrics-port 9464');
    expect(service('worker')).toContain('127.0.0.1:9464/health');
    expect(service('server')).toMatch(/healthcheck:\n\s+test: .*127\.0\.0\.1:8765\/health/);
  });

  it('requires a token from the environment: no server runs open', () => {
    expect(compose).toMatch(/FLOWCAST_TOKEN: \$\{FLOWCAST_TOKEN:\?[^}$]+\}/);
  });

  it('installs flowcast as a user does, with the server and Redis packages', () => {
    expect(compose).toContain('npm pack');
    expect(compose).toContain('peerDependencies');
  });

  it('has a .dockerignore that keeps node_modules, dist and .git out of the build context', () => {
    const ignored = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'dist', '.git', '.tmp']) expect(ignored).toContain(entry);
  });
});
