/**
 * Who may talk to the server from a browser, and who the client is behind a proxy.
 *
 * - **Origin** (every route: WebSocket, SSE, REST, static files): a request that
 *   carries an `Origin` is served only when that origin is the server's own (the page
 *   was served by this server) or in `allowedOrigins`. Requests without `Origin` (the
 *   CLI, scripts, the Python client) are unaffected. A state-changing request a browser
 *   marks `Sec-Fetch-Site: cross-site` is refused even without an `Origin`.
 * - **Host** (only on a server without auth): the `Host` header must be a name the
 *   server answers to: loopback names, an IP address, the bound address, or one of
 *   `allowedHosts`. That defeats DNS rebinding, where a page on `evil.example` points its
 *   name at 127.0.0.1 and so is "same origin" with the server (Vite and Jupyter do the
 *   same). With auth the token protects the server, and a proxy may use any name.
 * - **Client address**: with `trustProxy`, the address a proxy forwarded
 *   (`X-Forwarded-For`), the way Fastify's `request.ip` reads it; else the peer address.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import proxyAddr from '@fastify/proxy-addr';
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** Which proxies to believe (Fastify's `trustProxy`): all, a hop count, or addresses/CIDRs/`loopback`. */
export type TrustProxy = boolean | number | string | string[];

/** Why a request was refused by {@link HttpGuard.check}. */
export interface GuardRefusal {
  status: 403;
  code: 'forbidden_origin' | 'forbidden_host';
  message: string;
}

/** The origin and host rules every HTTP request and upgrade passes. */
export interface HttpGuardOptions {
  allowedOrigins: readonly string[];
  allowedHosts: readonly string[];
  /** The host the server is bound to (its name is always accepted). */
  boundHost: string;
  /** Check `Host` (a server without auth). */
  checkHost: boolean;
  trustProxy: TrustProxy;
}

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `http://a.example:8080` as an origin: scheme, host and port only. Throws on anything else. */
export function checkOrigin(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '' || value === '*' || value === 'null') {
    throw new InvalidArgumentError(`${name} must be an origin such as "https://app.example.com", received ${show(value)} (there is no "any origin": list each one)`);
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`${name} must be an origin such as "https://app.example.com", received ${show(value)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value.replace(/\/$/, '')) {
    throw new InvalidArgumentError(`${name} must be an origin (scheme://host[:port], no path), received ${show(value)}`);
  }
  return url.origin;
}

/** A host name for `allowedHosts`: `app.example.com`, or `.example.com` for it and every subdomain. */
export function checkHostName(value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$/.test(value) || value.length > 253) {
    throw new InvalidArgumentError(`${name} must be a host name such as "flowcast.internal" (or ".example.com" for subdomains), received ${show(value)}`);
  }
  return value.toLowerCase().replace(/\.$/, '');
}

/** Fastify's reading of `trustProxy` as a function of (address, hop index). */
export function trustFunction(trust: TrustProxy): (address: string, hop: number) => boolean {
  if (trust === true) return () => true;
  if (trust === false) return () => false;
  if (typeof trust === 'number') return (_a, hop) => hop < trust;
  const list = typeof trust === 'string' ? trust.split(',').map((s) => s.trim()) : trust;
  return proxyAddr.compile(list);
}

/** Checks `trustProxy` the way Fastify will read it; throws a clear error on anything else. */
export function checkTrustProxy(value: unknown): TrustProxy {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))) {
    try {
      trustFunction(value);
      return value;
    } catch (error) {
      throw new InvalidArgumentError(`trustProxy: ${(error as Error).message}, received ${show(value)}`);
    }
  }
  throw new InvalidArgumentError(`trustProxy must be a boolean, a hop count, or addresses/CIDRs ("loopback", "10.0.0.0/8"), received ${show(value)}`);
}

/** The hostname of a `Host` header (`[::1]:8765` → `::1`), lower-cased; `null` when it is not one. */
function hostnameOf(host: string): string | null {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? null : host.slice(1, end).toLowerCase();
  }
  const colon = host.indexOf(':');
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase().replace(/\.$/, '');
}

/** Applies the origin and host rules to requests and upgrades. */
export class HttpGuard {
  readonly #origins: ReadonlySet<string>;
  readonly #hosts: readonly string[];
  readonly #bound: string;
  readonly #checkHost: boolean;
  readonly #trust: (address: string, hop: number) => boolean;
  readonly #trusting: boolean;

  constructor(options: HttpGuardOptions) {
    this.#origins = new Set(options.allowedOrigins);
    this.#hosts = options.allowedHosts;
    this.#bound = options.boundHost.toLowerCase();
    this.#checkHost = options.checkHost;
    this.#trust = trustFunction(options.trustProxy);
    this.#trusting = options.trustProxy !== false;
  }

  /** Is `origin` in the allowed list (CORS answers only for these)? */
  isAllowedOrigin(origin: string): boolean {
    return this.#origins.has(origin);
  }

  /** Is this peer address a proxy to believe (its clients are counted by their forwarded address)? */
  isTrustedProxy(address: string): boolean {
    return this.#trusting && this.#trust(address, 0);
  }

  /** The client's address: the forwarded one when the peer is a trusted proxy. */
  clientAddress(request: IncomingMessage): string {
    if (!this.#trusting) return request.socket.remoteAddress ?? 'unknown';
    return proxyAddr(request, this.#trust);
  }

  /** `null` when the request may be served, else why not (answer 403). */
  check(request: IncomingMessage): GuardRefusal | null {
    const host = this.#host(request);
    if (this.#checkHost && !this.#answersTo(host)) {
      return {
        status: 403,
        code: 'forbidden_host',
        message: `Host ${show(host ?? '')} is not one this server answers to: without auth it serves loopback names and IP addresses only (DNS rebinding); add the name with --allowed-host or allowedHosts`,
      };
    }
    const origin = request.headers.origin;
    if (typeof origin === 'string') {
      if (this.#origins.has(origin) || this.#isOwnOrigin(origin, host)) return null;
      return {
        status: 403,
        code: 'forbidden_origin',
        message: `Origin ${show(origin)} is not allowed: serve the page from this server, or add the origin with --allowed-origin or allowedOrigins`,
      };
    }
    if (request.headers['sec-fetch-site'] === 'cross-site' && !SAFE_METHODS.has(request.method ?? 'GET')) {
      return { status: 403, code: 'forbidden_origin', message: 'Cross-site request refused: a browser page on another site may not change state here' };
    }
    return null;
  }

  /** The `Host` the client asked for (the forwarded one behind a trusted proxy). */
  #host(request: IncomingMessage): string | null {
    if (this.#trusting) {
      const forwarded = request.headers['x-forwarded-host'];
      if (typeof forwarded === 'string' && forwarded !== '' && this.#trust(request.socket.remoteAddress ?? '', 0)) {
        return forwarded.split(',')[0]?.trim() ?? null;
      }
    }
    return typeof request.headers.host === 'string' ? request.headers.host : null;
  }

  /** The page was served by this server: its origin's host:port is the one the request was sent to. */
  #isOwnOrigin(origin: string, host: string | null): boolean {
    if (host === null) return false;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    const defaultPort = url.protocol === 'https:' ? '443' : '80';
    const [hostName, hostPort] = splitHost(host);
    const originName = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    return hostName === originName && (hostPort ?? defaultPort) === (url.port === '' ? defaultPort : url.port);
  }

  #answersTo(host: string | null): boolean {
    if (host === null) return false;
    const name = hostnameOf(host);
    if (name === null || name === '') return false;
    if (LOOPBACK_NAMES.has(name) || name.endsWith('.localhost') || isIP(name) !== 0 || name === this.#bound) return true;
    return this.#hosts.some((h) => (h.startsWith('.') ? name === h.slice(1) || name.endsWith(h) : name === h));
  }
}

function splitHost(host: string): [string, string | undefined] {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    const port = host.slice(end + 1).replace(/^:/, '');
    return [host.slice(1, end).toLowerCase(), port === '' ? undefined : port];
  }
  const colon = host.lastIndexOf(':');
  if (colon < 0) return [host.toLowerCase(), undefined];
  return [host.slice(0, colon).toLowerCase(), host.slice(colon + 1)];
}
