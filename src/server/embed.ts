/**
 * flowcast inside an app you already run: a Fastify plugin, and an attach mode for any
 * `http.Server` (Express, Koa, plain Node). Both mount one {@link FlowcastServer} under
 * a base path: the dashboard and its files, REST, SSE, the WebSocket endpoint, `/health`
 * and `/metrics`, nothing outside it.
 *
 * flowcast's routes run on a Fastify instance of its own that never listens: the host
 * hands it the requests under the base path (`app.routing`) and the WebSocket upgrades
 * there. So its validation, error bodies, origin/host rules, auth, rate limits and
 * stream caps are the same as on the standalone server, whatever the host's settings.
 * What the host's server owns (TCP connection caps, timeouts, TLS) stays the host's.
 */
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { InvalidArgumentError } from '../core/errors.js';
import { checkObject } from '../core/validate.js';
import { checkBasePath, isUnder, pathOf } from './base-path.js';
import type { ServerOptions } from './options.js';
import { FlowcastServer } from './server.js';

/** Options that belong to the host's own HTTP server, refused when embedding. */
const HOST_OWNED = ['host', 'port', 'tls', 'basePath', 'maxConnections', 'handshakeTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs'] as const;

/** The server options that apply to an embedded flowcast (the rest are the host server's). */
export type EmbeddedOptions = Omit<ServerOptions, (typeof HOST_OWNED)[number]>;

/** Options of {@link flowcastPlugin}: Fastify's `prefix` (required) and the {@link EmbeddedOptions}. */
export interface FlowcastPluginOptions extends EmbeddedOptions {
  /** Where flowcast is mounted, e.g. `/flowcast` (Fastify's register option). */
  prefix?: string;
}

/** Options of {@link attachFlowcast}. */
export interface AttachOptions extends EmbeddedOptions {
  /** Where flowcast is mounted, e.g. `/flowcast`. Required: flowcast never takes the whole app. */
  basePath: string;
}

/** What {@link attachFlowcast} returns. */
export interface AttachedFlowcast {
  /** The flowcast server (its hub, auth, metrics…); it does not listen. */
  readonly server: FlowcastServer;
  /** The base path, normalised (`/flowcast`). */
  readonly basePath: string;
  /** Resolves once the routes are ready (requests before that wait for it). */
  readonly ready: Promise<void>;
  /**
   * Express/Connect middleware and a plain Node request listener: requests under the
   * base path are answered, others go to `next()` (without `next`, a 404).
   */
  readonly handler: (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;
  /** Is this request flowcast's (its path under the base path)? For Koa and other routers. */
  handles(req: IncomingMessage): boolean;
  /** Closes flowcast's connections (WebSocket 1001, SSE) and stops taking upgrades. Idempotent; the host server stays up. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

function embeddedServer(options: EmbeddedOptions, basePath: string, name: string): FlowcastServer {
  checkObject(options, name);
  for (const key of HOST_OWNED) {
    if ((options as Record<string, unknown>)[key] !== undefined) {
      throw new InvalidArgumentError(`${name}: ${key} is the host server's when flowcast is embedded; set it on your own server${key === 'basePath' ? ' (use the mount path)' : ''}`);
    }
  }
  if (basePath === '') throw new InvalidArgumentError(`${name}: flowcast needs a base path such as "/flowcast" when embedded, not the root`);
  return new FlowcastServer({ ...options, basePath });
}

/** A body a middleware already read cannot be read again: say so instead of waiting for it. */
function bodyAlreadyRead(req: IncomingMessage): boolean {
  return (req as { _body?: unknown })._body === true || (req.readableEnded && req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

function refuseUpgrade(socket: Duplex): void {
  socket.on('error', () => undefined);
  if (socket.writable) socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 9\r\n\r\nNot Found');
  else socket.destroy();
}

function refuseReadBody(res: ServerResponse): void {
  const message = 'flowcast must be mounted before body parsers (such as express.json()): the request body was already read';
  res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ error: { code: 'internal_error', message } }));
}

/**
 * Mounts flowcast under `basePath` on an existing `http.Server` (or `https.Server`):
 * WebSocket upgrades under the base path are taken at once (others are left to their
 * listeners), and {@link AttachedFlowcast.handler} serves the HTTP side. Mount the
 * handler before body parsers. Call `close()` before closing the host server.
 *
 * @example
 * const app = express();
 * const server = http.createServer(app);
 * const flowcast = attachFlowcast(server, { basePath: '/flowcast', broker, tracking });
 * app.use(flowcast.handler);
 * server.listen(3000);
 */
export function attachFlowcast(httpServer: HttpServer | HttpsServer, options: AttachOptions): AttachedFlowcast {
  checkObject(options, 'attachFlowcast options');
  if (httpServer === null || typeof (httpServer as { on?: unknown }).on !== 'function' || typeof (httpServer as { listen?: unknown }).listen !== 'function') {
    throw new InvalidArgumentError('attachFlowcast: the first argument must be an http.Server or https.Server');
  }
  const { basePath: rawBase, ...rest } = options;
  const basePath = checkBasePath(rawBase, 'basePath');
  const server = embeddedServer(rest, basePath, 'attachFlowcast options');
  const ready = server.startEmbedded();
  // Startup cannot fail once the options were accepted, but an unhandled rejection must never crash the host.
  ready.catch(() => undefined);
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (server.handleUpgrade(req, socket, head)) return;
    // Nobody else takes upgrades on this server: answer, rather than leave the socket hanging.
    if (httpServer.listenerCount('upgrade') === 1) refuseUpgrade(socket);
  };
  httpServer.on('upgrade', onUpgrade);
  const handles = (req: IncomingMessage): boolean => {
    const path = pathOf((req as { originalUrl?: string }).originalUrl ?? req.url);
    return path !== null && isUnder(path, basePath);
  };
  const handler = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void => {
    if (!handles(req)) {
      if (next !== undefined) next();
      else res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found');
      return;
    }
    // Express strips a mount path from req.url; flowcast's routes carry the whole path.
    const original = (req as { originalUrl?: string }).originalUrl;
    if (original !== undefined) req.url = original;
    if (bodyAlreadyRead(req)) return refuseReadBody(res);
    ready.then(
      () => server.app.routing(req, res),
      (error: unknown) => (next === undefined ? res.destroy() : next(error)),
    );
  };
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      httpServer.off('upgrade', onUpgrade);
      await ready.catch(() => undefined);
      await server.close();
    })();
    return closing;
  };
  return { server, basePath, ready, handler, handles, close, [Symbol.asyncDispose]: close };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The flowcast server mounted by {@link flowcastPlugin}. */
    flowcast: FlowcastServer;
  }
}

/**
 * The Fastify plugin: `app.register(flowcastPlugin, { prefix: '/flowcast', broker,
 * tracking })`. Everything flowcast serves is under the prefix; `app.flowcast` is the
 * {@link FlowcastServer}. It starts when the app is ready and closes with it.
 *
 * @example
 * const app = Fastify();
 * await app.register(flowcastPlugin, { prefix: '/flowcast', broker, tracking });
 * await app.listen({ port: 3000 });
 */
export const flowcastPlugin = fp<FlowcastPluginOptions>(
  // eslint-disable-next-line @typescript-eslint/require-await -- an async plugin: a bad option rejects register()
  async (fastify: FastifyInstance, options: FlowcastPluginOptions) => {
    const { prefix, ...rest } = options;
    // Not encapsulated (so `app.flowcast` is visible): the prefix is applied here.
    const local = checkBasePath(prefix, 'prefix');
    const basePath = checkBasePath(`${fastify.prefix}${local}`, 'prefix');
    const server = embeddedServer(rest, local === '' ? '' : basePath, 'flowcastPlugin options');
    fastify.decorate('flowcast', server);
    const forward = (request: FastifyRequest, reply: FastifyReply): void => {
      void reply.hijack();
      server.app.routing(request.raw, reply.raw);
    };
    const onRequest = (request: FastifyRequest, reply: FastifyReply, next: () => void): void => {
      forward(request, reply);
      next();
    };
    const never = (): void => undefined;
    fastify.all(local, { onRequest }, never);
    fastify.all(`${local}/*`, { onRequest }, never);
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (server.handleUpgrade(req, socket, head)) return;
      // Nobody else takes upgrades on this server: answer, rather than leave the socket hanging.
      if (fastify.server.listenerCount('upgrade') === 1) refuseUpgrade(socket);
    };
    fastify.server.on('upgrade', onUpgrade);
    fastify.addHook('onReady', async () => {
      await server.startEmbedded();
    });
    fastify.addHook('preClose', async () => {
      fastify.server.off('upgrade', onUpgrade);
      await server.close();
    });
  },
  { name: 'flowcast', fastify: '5.x' },
);
