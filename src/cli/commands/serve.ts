import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { describeError, InvalidArgumentError } from '../../core/errors.js';
import { InMemoryBroker } from '../../pipeline/memory-broker.js';
import type { Broker } from '../../pipeline/broker.js';
import { HookManager } from '../../events/hook-manager.js';
import { createDemo } from '../../demo/pipelines.js';
import { runDemo } from '../../demo/runner.js';
import { getEngine } from '../../pipeline/engine.js';
import { InMemoryPipelineStorage, PipelineTrackingManager } from '../../tracking/index.js';
import { getWebSocketServer, type FlowcastServer, type ServerOptions } from '../../server/server.js';
import type { AuthOptions, Principal } from '../../server/auth.js';
import { collect, nonNegativeInt, port, positiveInt, urlWith } from '../options.js';
import { DEFAULT_DEFLATE_THRESHOLD } from '../../server/deflate.js';
import { BullMQBroker } from '../../redis/bullmq-broker.js';
import { createLogger, type Logger, type LogLevel } from '../../core/logger.js';
import { logError } from '../../core/log-throttle.js';
import { addRuntimeOptions, armShutdownTimer, DEFAULT_REDIS_CONNECT_TIMEOUT_S, DEFAULT_SHUTDOWN_TIMEOUT_S, redactUrl, redisUrlFromEnv, waitForRedis } from '../runtime.js';
import { ExternalEventIngestor } from '../../redis/external-ingestor.js';
import { RedisPubSubTransport } from '../../redis/transport.js';
import { RedisRunState } from '../../redis/run-state.js';

/** Options of `flowcast serve`. */
export interface ServeCommandOptions {
  /** @default "127.0.0.1" */
  host?: string;
  /** @default 8765 */
  port?: number;
  /** Run the demo pipelines in this process, again and again. */
  demo?: boolean;
  /** With `demo`: runs in flight at once. @default 3 */
  concurrency?: number;
  /** Static API keys (full rights). @default $FLOWCAST_TOKEN when set */
  token?: string[];
  /** HS256 secret of accepted JWTs. @default $FLOWCAST_JWT_SECRET when set */
  jwtSecret?: string;
  /** PEM files for native TLS. */
  tlsCert?: string;
  tlsKey?: string;
  /** Origins whose pages may use the server (WebSocket, SSE, REST with CORS). @default none but the server's own pages */
  allowedOrigin?: string[];
  /** Without tokens: host names the server answers to besides loopback names and IP addresses. */
  allowedHost?: string[];
  /** Behind a reverse proxy: `true`, a hop count, or proxy addresses/CIDRs (comma-separated). */
  trustProxy?: string | boolean;
  /** What a JWT without a pipelines claim may read: `*` or comma-separated ids. @default none */
  jwtDefaultPipelines?: string;
  /** Connections at once (all kinds). */
  maxConnections?: number;
  /** Connections at once per client address. */
  maxConnectionsPerAddress?: number;
  /** permessage-deflate for clients that offer it: `true` (threshold 1024 bytes) or the threshold in bytes. @default off */
  deflate?: boolean | number;
  /** Redis URL: BullMQ broker, Redis tracking and event log, shared with workers and other servers. @default $FLOWCAST_REDIS_URL */
  redis?: string;
  /** With `redis`: the key prefix of the deployment. @default "flowcast:" */
  keyPrefix?: string;
  /** With `redis` and `demo`: run the demo's jobs in this process too. `--no-worker` leaves them to `flowcast worker`. @default true */
  worker?: boolean;
  /** Lowest level logged (stderr: JSON lines, readable ones on a terminal). @default $FLOWCAST_LOG_LEVEL, else "info" */
  logLevel?: LogLevel;
  /** With `redis`: seconds to try to reach Redis at start before exiting 1. @default $FLOWCAST_REDIS_CONNECT_TIMEOUT, else 5 */
  redisConnectTimeout?: number;
  /** Seconds a stop by SIGINT/SIGTERM may take before the process exits anyway. @default $FLOWCAST_SHUTDOWN_TIMEOUT, else 10 */
  shutdownTimeout?: number;
}

/** Where the command writes, and (for tests) what stops it like Ctrl-C. */
export interface ServeIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  signal?: AbortSignal;
  /** Told once the server listens (tests use it instead of parsing the output). */
  onListening?: (server: FlowcastServer) => void;
  /** The logger of the server and its Redis parts. @default a pino logger at `logLevel` on `stderr` */
  logger?: Logger;
}

/** Adds `flowcast serve` to the program. */
export function registerServeCommand(program: Command): Command {
  const command = program
    .command('serve')
    .description('run the flowcast server: WebSocket, SSE, REST API, metrics and dashboard on one port')
    .addOption(new Option('--host <host>', 'the address to listen on (0.0.0.0 for every interface)').env('HOST').default('127.0.0.1'))
    .addOption(new Option('-p, --port <port>', 'the port (0 picks a free one)').env('PORT').argParser(port).default(8765))
    .option('--demo', 'run the demo pipelines in this process, again and again, so there is something to watch')
    .option('-c, --concurrency <count>', 'with --demo: runs in flight at once', positiveInt, 3)
    .addOption(new Option('--token <key>', 'accept this API key (full rights); repeat for more').env('FLOWCAST_TOKEN').argParser(collect))
    .addOption(new Option('--jwt-secret <secret>', 'accept HS256 JWTs signed with this secret').env('FLOWCAST_JWT_SECRET'))
    .option('--tls-cert <file>', 'PEM certificate: serve wss:// and https://')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--allowed-origin <origin>', 'let pages from this origin use the server (WebSocket, SSE, REST with CORS); repeat for more', collect)
    .option('--allowed-host <host>', 'without tokens: also answer to this Host name (loopback names and IP addresses always work); repeat for more', collect)
    .option('--trust-proxy [proxies]', 'behind a reverse proxy: believe X-Forwarded-For from these addresses/CIDRs (comma-separated, "loopback"), a hop count, or every peer when given alone')
    .option('--jwt-default-pipelines <ids>', 'what a JWT without a "pipelines" claim may read: "*" or comma-separated pipeline ids (default: nothing)')
    .option('--max-connections <count>', 'connections at once, all kinds (default: 10000, or ulimit -n minus 64)', positiveInt)
    .option('--max-connections-per-address <count>', 'connections at once from one client address (default: 128)', positiveInt)
    .option('--deflate [threshold]', `permessage-deflate for clients that offer it: compress messages of at least threshold bytes (default ${DEFAULT_DEFLATE_THRESHOLD})`, nonNegativeInt)
    .addOption(
      new Option('--redis <url>', 'share runs, tracking and events with workers and other servers through Redis (default: $FLOWCAST_REDIS_URL, else $REDIS_URL)')
        .env('FLOWCAST_REDIS_URL')
        .argParser(urlWith(['redis:', 'rediss:'])),
    )
    .addOption(new Option('--key-prefix <prefix>', 'with --redis: the key prefix shared with workers and other servers (default: "flowcast:")').env('FLOWCAST_KEY_PREFIX'))
    .option('--no-worker', 'with --redis --demo: only start the demo runs; flowcast worker processes run their steps');
  return addRuntimeOptions(command)
    .addHelpText(
      'after',
      `
With --redis the server is one instance of many: runs started anywhere (and their steps
run by \`flowcast worker\` processes) stream to its clients, tracking lives in Redis, and
clients may reconnect to any instance and resume. Without --redis everything is in this
process.

Without --token or --jwt-secret (and without $FLOWCAST_TOKEN / $FLOWCAST_JWT_SECRET) the
server is open to everyone who can reach it: keep it on 127.0.0.1 then. It still only
answers to loopback names and IP addresses (add names with --allowed-host), and pages of
other sites cannot use it (add origins with --allowed-origin). docs/security.md has
every limit. Ctrl-C (or SIGTERM) cancels the demo runs in flight, closes every
connection and exits 0 (within --shutdown-timeout, else 1).

With --redis, the server tries to reach Redis for --redis-connect-timeout seconds at
start, then exits 1 with one line saying why. If Redis goes away later, /health stays
200, /ready and the REST API answer 503 (redis_unavailable) until it is back, and the
log says so once, then counts. Every flag with "env:" can be set by that variable
instead (the flag wins); docs/configuration.md lists them.

Examples:
  flowcast serve --demo
  flowcast serve --demo --host 0.0.0.0 --token "$(openssl rand -hex 16)"
  flowcast serve --tls-cert cert.pem --tls-key key.pem --jwt-secret "$SECRET"
  flowcast serve --deflate 4096          # compress messages of 4 KB or more
  flowcast serve --redis redis://127.0.0.1:6379 --demo --no-worker
  flowcast worker --redis redis://127.0.0.1:6379 --tasks dist/demo/worker-tasks.js`,
    )
    .action(async (options: ServeCommandOptions, command: Command) => {
      if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) command.error('error: --tls-cert and --tls-key go together', { exitCode: 2 });
      if (options.redis === undefined) {
        try {
          const fromEnv = redisUrlFromEnv();
          if (fromEnv !== undefined) options.redis = fromEnv;
        } catch (error) {
          command.error(`error: ${error instanceof Error ? error.message : describeError(error)}`, { exitCode: 2 });
        }
      }
      process.exitCode = await serveCommand(options);
    });
}

/** Builds the server options of the command line (reads the TLS files). Throws with a clear message on unreadable files. */
export function serverOptionsFrom(options: ServeCommandOptions, env: NodeJS.ProcessEnv = process.env): ServerOptions {
  const server: ServerOptions = { host: options.host ?? '127.0.0.1', port: options.port ?? 8765 };
  const tokens = options.token ?? (env.FLOWCAST_TOKEN ? [env.FLOWCAST_TOKEN] : []);
  const secret = options.jwtSecret ?? (env.FLOWCAST_JWT_SECRET || undefined);
  const auth: AuthOptions = {};
  if (tokens.length > 0) {
    auth.apiKeys = Object.fromEntries(tokens.map((key, i): [string, Principal] => [key, { id: `token-${i + 1}`, pipelines: '*', actions: ['start', 'cancel', 'delete', 'retry', 'resume'] }]));
  }
  if (secret !== undefined) {
    auth.jwt = { secret };
    if (options.jwtDefaultPipelines !== undefined) auth.jwt.defaultPipelines = pipelineList(options.jwtDefaultPipelines);
  } else if (options.jwtDefaultPipelines !== undefined) {
    throw new Error('--jwt-default-pipelines needs --jwt-secret');
  }
  if (auth.apiKeys !== undefined || auth.jwt !== undefined) server.auth = auth;
  if (options.tlsCert !== undefined && options.tlsKey !== undefined) {
    server.tls = { cert: readPem(options.tlsCert, '--tls-cert'), key: readPem(options.tlsKey, '--tls-key') };
  }
  if (options.allowedOrigin !== undefined) server.allowedOrigins = options.allowedOrigin;
  if (options.allowedHost !== undefined) server.allowedHosts = options.allowedHost;
  if (options.trustProxy !== undefined) server.trustProxy = trustProxyOf(options.trustProxy);
  if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections;
  if (options.maxConnectionsPerAddress !== undefined) server.maxConnectionsPerAddress = options.maxConnectionsPerAddress;
  if (options.deflate !== undefined && options.deflate !== false) server.perMessageDeflate = options.deflate === true ? true : { threshold: options.deflate };
  return server;
}

/** `*` or `a,b,c`. */
function pipelineList(value: string): '*' | string[] {
  if (value.trim() === '*') return '*';
  const ids = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (ids.length === 0) throw new Error(`--jwt-default-pipelines: expected "*" or comma-separated pipeline ids, received ${JSON.stringify(value)}`);
  return ids;
}

/** `--trust-proxy` alone: every peer; a number: hops; else addresses/CIDRs. */
function trustProxyOf(value: string | boolean): NonNullable<ServerOptions['trustProxy']> {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  if (/^\d+$/.test(value)) return Number(value);
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function readPem(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${option} ${file}: ${describeError(error)}`);
  }
}

/**
 * Runs the server (and with `demo` the demo pipelines) until SIGINT/SIGTERM or
 * `io.signal`; then stops the demo, closes the server and the broker. Resolves with the
 * exit code: 0 after a clean stop, 1 when the server cannot start.
 */
export async function serveCommand(options: ServeCommandOptions, io: ServeIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { stdout: out, stderr: err } = io;
  let serverOptions: ServerOptions;
  try {
    serverOptions = serverOptionsFrom(options);
  } catch (error) {
    err.write(`flowcast serve: ${describeError(error)}\n`);
    return 1;
  }
  const redisUrl = options.redis ?? (process.env.FLOWCAST_REDIS_URL || undefined);
  const keyPrefix = options.keyPrefix ?? (process.env.FLOWCAST_KEY_PREFIX || 'flowcast:');
  const logger = io.logger ?? createLogger({ level: options.logLevel ?? 'info', destination: err });
  if (redisUrl !== undefined) {
    const timeout = options.redisConnectTimeout ?? DEFAULT_REDIS_CONNECT_TIMEOUT_S;
    const unreachable = await waitForRedis(redisUrl, timeout, io.signal);
    if (unreachable !== null) {
      err.write(`flowcast serve: cannot reach Redis at ${redactUrl(redisUrl)} (tried for ${timeout} s): ${unreachable}\n`);
      return 1;
    }
  }
  let broker: Broker;
  let tracking: PipelineTrackingManager;
  try {
    if (redisUrl === undefined) {
      broker = new InMemoryBroker();
      tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage({ maxRuns: 5000 }));
    } else {
      // Without the demo this process runs no job: it serves what workers and producers do.
      const worker = options.demo === true && options.worker !== false ? { concurrency: 16 } : false;
      broker = new BullMQBroker({ connection: redisUrl, keyPrefix, worker, logger });
      // Its failures go to the log like the broker's (a Redis outage: one line, then counts).
      tracking = new PipelineTrackingManager({ onError: (error, where) => logError(logger, error, `tracking: ${where}`) }).withAutoStorage(broker);
    }
  } catch (error) {
    err.write(`flowcast serve: ${describeError(error)}\n`);
    return 1;
  }
  const hooks = new HookManager();
  const demo = options.demo === true ? createDemo(broker, hooks, tracking) : null;
  const pipelines = demo === null ? [] : [...demo.startable];
  let server: FlowcastServer;
  try {
    server = getWebSocketServer({ ...serverOptions, broker, tracking, logger, ...(pipelines.length > 0 && { pipelines }) });
  } catch (error) {
    err.write(`flowcast serve: ${describeError(error)}\n`);
    await tracking.close();
    await broker.close();
    return error instanceof InvalidArgumentError ? 2 : 1;
  }
  const stop = new AbortController();
  let closed: (() => void) | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    // A second Ctrl-C while closing: leave at once.
    if (stop.signal.aborted) process.exit(130);
    closed = armShutdownTimer(options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_S, err, 'flowcast serve');
    stop.abort(new Error(`stopped by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onAbort = (): void => stop.abort(new Error('stopped'));
  io.signal?.addEventListener('abort', onAbort, { once: true });
  if (io.signal?.aborted === true) onAbort();

  // Log lines and progress that other programs write to Redis (seed 003, docs/redis.md):
  // every server instance runs an ingestor; one of them consumes at a time.
  let ingestor: ExternalEventIngestor | null = null;
  if (broker instanceof BullMQBroker && broker.transport instanceof RedisPubSubTransport) {
    ingestor = new ExternalEventIngestor({
      transport: broker.transport,
      ...(broker.runState instanceof RedisRunState && { runState: broker.runState }),
      logger,
      onEvent: (event) => tracking.record(event),
    });
  }
  let code = 0;
  let demoLoop: Promise<unknown> = Promise.resolve();
  try {
    try {
      await server.startServer();
    } catch (error) {
      err.write(`flowcast serve: cannot listen on ${serverOptions.host}:${serverOptions.port}: ${describeError(error)}\n`);
      return 1;
    }
    await ingestor?.start();
    out.write(banner(server, { ...options, ...(redisUrl !== undefined && { redis: redisUrl, keyPrefix }) }));
    io.onListening?.(server);
    if (demo !== null) {
      demoLoop = runDemo(demo, { concurrency: options.concurrency ?? 3, signal: stop.signal }).catch((error: unknown) => {
        // Stopping already: a run that could not be cancelled (Redis away) is the stop's
        // business (the broker's one line), not a failure of the demo.
        if (stop.signal.aborted) return;
        err.write(`flowcast serve: the demo stopped: ${describeError(error)}\n`);
        code = 1;
        stop.abort(error);
      });
    }
    if (!stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
    out.write('flowcast serve: stopping\n');
    // Runs in flight end soon after their cancellation; without Redis they cannot be
    // cancelled (the broker says it is away), so their end is not awaited.
    if (broker.health?.().ok !== false) await Promise.race([demoLoop, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    io.signal?.removeEventListener('abort', onAbort);
    // The server first: its clients are told, and its hub and reporter stop (what they
    // still wait for from Redis is no error any more).
    const serverClosed = server.close();
    // Redis is away (now, or it goes away during the stop): close the broker at once. It
    // says so in one line and drops its connections, so what waits on Redis (a REST
    // request in flight, tracking writes, run-state transitions) fails now instead of
    // holding the stop until the timeout.
    const redisBroker = broker instanceof BullMQBroker ? broker : null;
    const withoutRedis = (): void => {
      // A failure of that close is reported by the last step below, which awaits the same close.
      if (redisBroker?.health().ok === false) redisBroker.close({ force: true }).catch(() => undefined);
    };
    const watchdog = redisBroker === null ? null : setInterval(withoutRedis, 250).unref();
    withoutRedis();
    await serverClosed;
    // Runs started over REST (the demo's tail_task runs for minutes) cannot outlive an
    // in-memory broker: cancel them rather than wait for them. On Redis they carry on.
    if (broker instanceof InMemoryBroker) await cancelRunsInFlight(broker, tracking);
    await ingestor?.close();
    await hooks.idle();
    // Tracking may use the broker's Redis connection: close it first (its waiting writes go out).
    await tracking.close();
    await broker.close();
    if (watchdog !== null) clearInterval(watchdog);
    (closed as (() => void) | null)?.();
  }
  return code;
}

/** Cancels the runs the in-memory broker still runs (tracking knows them). */
async function cancelRunsInFlight(broker: InMemoryBroker, tracking: PipelineTrackingManager): Promise<void> {
  const engine = getEngine(broker);
  const running = await tracking.listPipelines({ status: 'RUNNING', limit: 10_000 }).catch(() => []);
  await Promise.all(running.map((r) => engine.cancel(r.run_id, 'the server stopped').catch(() => false)));
}

/** The lines that tell where everything is served. */
export function banner(server: FlowcastServer, options: ServeCommandOptions): string {
  const http = server.httpUrl;
  const lines = [
    `flowcast server listening on ${server.options.host}:${server.port}${server.options.tls ? ' (TLS)' : ''}`,
    `  Dashboard   ${http}/`,
    `  WebSocket   ${server.url}/ws`,
    `  SSE         ${http}/api/events?pipeline_id=*`,
    `  REST API    ${http}/api/runs   (OpenAPI: ${http}/api/openapi.json)`,
    `  Metrics     ${http}/metrics`,
    `  Health      ${http}/health`,
    ...deflateLine(server),
    `  Auth        ${server.options.auth === undefined ? 'none: any program that can reach this address can read and cancel runs (pages of other sites cannot: docs/security.md)' : 'tokens required'}`,
  ];
  if (options.redis !== undefined) {
    lines.push(`  Redis       ${redactUrl(options.redis)} (key prefix ${options.keyPrefix ?? 'flowcast:'})${options.demo === true && options.worker === false ? '; demo steps run on flowcast worker processes' : ''}`);
    if (options.demo === true && options.worker === false) {
      const prefix = options.keyPrefix === undefined || options.keyPrefix === 'flowcast:' ? '' : ` --key-prefix ${options.keyPrefix}`;
      lines.push(`  Workers     none in this process; start one (or more) with: flowcast worker --demo --redis ${redactUrl(options.redis)}${prefix}`);
    }
    lines.push(`  Ingest      log lines from other programs: XADD ${options.keyPrefix ?? 'flowcast:'}ingest * run_id <run> step <step> type log message <text>`);
  }
  if (options.demo === true) lines.push(`  Demo        ${options.concurrency ?? 3} runs at a time; try: flowcast watch '*' --url ${server.url}`);
  if (options.demo === true) lines.push(`  Start       ${http}/dashboard/pipelines (tail_task: one run at a time), or: flowcast run tail_task --input '{"messages":5}' --watch --url ${http}`);
  lines.push('Ctrl-C stops.');
  return `${lines.join('\n')}\n`;
}

/** The banner's line about compression, when it is on. */
function deflateLine(server: FlowcastServer): string[] {
  const option = server.options.perMessageDeflate;
  if (option === undefined || option === false) return [];
  const threshold = option === true ? DEFAULT_DEFLATE_THRESHOLD : (option.threshold ?? DEFAULT_DEFLATE_THRESHOLD);
  return [`  Compression permessage-deflate for messages of ${threshold} bytes or more (clients that offer it)`];
}


