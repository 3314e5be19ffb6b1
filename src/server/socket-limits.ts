/**
 * Limits on the TCP connections themselves, before any request is read: one cap on all
 * connections (HTTP, WebSocket and SSE alike), a cap per client address, and a deadline
 * for a connection to complete its first request or upgrade. Every descriptor a client
 * can make the server hold is counted here, so idle sockets cannot exhaust them.
 */
import { readFileSync } from 'node:fs';
import { STATUS_CODES, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';

/** The limits on every TCP connection (total, per address, handshake time). */
export interface SocketLimitsOptions {
  /** Connections at once, all kinds. */
  maxConnections: number;
  /** Connections at once from one peer address (a trusted proxy's address is exempt). */
  maxConnectionsPerAddress: number;
  /** A connection that has not completed a request or upgrade by then is closed. 0 disables. */
  handshakeTimeoutMs: number;
  /** Is this peer a proxy whose clients are counted by their forwarded address instead? */
  isTrustedProxy: (address: string) => boolean;
  /** `true` for TLS: a refused connection is reset (it cannot be answered in HTTP before the handshake). */
  tls: boolean;
}

/** Counters for /metrics and tests. */
export interface SocketStats {
  open: number;
  refusedTotal: number;
  refusedPerAddress: number;
  handshakeTimeouts: number;
}

/** Descriptors kept free for files, Redis and the like when the default cap is derived from `ulimit -n`. */
const RESERVED_DESCRIPTORS = 64;
/** Refused connections answered at once (the rest are reset): well inside the reserve above. */
const LINGERING_MAX = 16;

/**
 * The default `maxConnections`: 10,000, or the process's open-file limit minus 64 when
 * that is lower (read from /proc on Linux), so the cap is hit before the descriptors run out.
 */
export function defaultMaxConnections(): number {
  const limit = openFileLimit();
  return limit === null ? 10_000 : Math.max(16, Math.min(10_000, limit - RESERVED_DESCRIPTORS));
}

/** The soft `RLIMIT_NOFILE` of this process, when the platform tells. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null || m[1] === 'unlimited') return null;
    return Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * Answers a socket that never reaches the HTTP parser (a refused connection, a refused
 * WebSocket upgrade) with one whole HTTP/1.1 response, then ends it.
 */
export function writeRawAnswer(socket: Duplex, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n${extra}Content-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

function respond(socket: Socket, status: number, text: string, reason: string): void {
  // What the client sends is read and dropped: closing a socket with unread data would reset it, and the answer with it.
  socket.resume();
  writeRawAnswer(socket, status, 'application/json; charset=utf-8', `${JSON.stringify({ error: { code: reason, message: text } })}\n`, { 'Retry-After': '1' });
  // A peer that never reads must not hold the socket.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Installs the limits on `server` (its `connection` event). Returns the live counters. */
export function installSocketLimits(server: Server, options: SocketLimitsOptions): SocketStats {
  const stats: SocketStats = { open: 0, refusedTotal: 0, refusedPerAddress: 0, handshakeTimeouts: 0 };
  const perAddress = new Map<string, number>();
  /** Sockets still waiting for their first request, with their deadline timer. */
  const pending = new WeakMap<Socket, NodeJS.Timeout>();
  const started = (socket: Socket): void => {
    const timer = pending.get(socket);
    if (timer !== undefined) {
      clearTimeout(timer);
      pending.delete(socket);
    }
  };
  // The server's own listeners (HTTP's parser, TLS) see only the connections admitted here.
  const inner = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (admit(socket)) for (const listener of inner) listener.call(server, socket);
  });

  function admit(socket: Socket): boolean {
    const address = normalise(socket.remoteAddress ?? 'unknown');
    if (stats.open >= options.maxConnections) {
      stats.refusedTotal++;
      refuse(socket, 503, `The server is full: at most ${options.maxConnections} connections (maxConnections)`, 'server_full');
      return false;
    }
    const counted = !options.isTrustedProxy(address);
    const mine = perAddress.get(address) ?? 0;
    if (counted && mine >= options.maxConnectionsPerAddress) {
      stats.refusedPerAddress++;
      refuse(socket, 429, `Too many connections from ${address}: at most ${options.maxConnectionsPerAddress} (maxConnectionsPerAddress)`, 'too_many_connections');
      return false;
    }
    stats.open++;
    if (counted) perAddress.set(address, mine + 1);
    if (options.handshakeTimeoutMs > 0) {
      const timer = setTimeout(() => {
        pending.delete(socket);
        stats.handshakeTimeouts++;
        socket.destroy();
      }, options.handshakeTimeoutMs);
      timer.unref();
      pending.set(socket, timer);
    }
    socket.once('close', () => {
      started(socket);
      stats.open--;
      if (!counted) return;
      const n = (perAddress.get(address) ?? 1) - 1;
      if (n <= 0) perAddress.delete(address);
      else perAddress.set(address, n);
    });
    return true;
  }
  // The first request (or upgrade) ends the deadline; for TLS the request's socket is the TLS one, its parent the TCP one.
  const onRequest = (request: { socket: Socket }): void => {
    const socket = request.socket as Socket & { _parent?: Socket };
    started(socket);
    if (socket._parent !== undefined) started(socket._parent);
  };
  server.prependListener('request', onRequest);
  server.prependListener('upgrade', onRequest);

  /** Refused sockets still being answered: each holds a descriptor for up to a second. */
  let lingering = 0;
  function refuse(socket: Socket, status: 503 | 429, message: string, code: string): void {
    socket.on('error', () => socket.destroy());
    // Under a flood of connections, answering would hold more descriptors than the cap leaves free: reset instead.
    if (options.tls || lingering >= LINGERING_MAX) {
      socket.destroy();
      return;
    }
    lingering++;
    socket.once('close', () => lingering--);
    respond(socket, status, message, code);
  }
  return stats;
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client. */
function normalise(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * Long-lived streams (WebSocket, SSE) per client address, the address being the
 * forwarded one behind a trusted proxy: there every client shares the proxy's TCP
 * address, so the per-address cap is applied here instead.
 */
export class AddressCounter {
  readonly max: number;
  readonly #counts = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
  }

  /** Takes a slot for `address`: its release function (call once), or `null` when the address is at its cap. */
  acquire(address: string): (() => void) | null {
    const key = normalise(address);
    const n = this.#counts.get(key) ?? 0;
    if (n >= this.max) return null;
    this.#counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#counts.get(key) ?? 1) - 1;
      if (left <= 0) this.#counts.delete(key);
      else this.#counts.set(key, left);
    };
  }
}
