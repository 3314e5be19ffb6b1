/**
 * What the fan-out bench's processes say to each other over their IPC channels, and the
 * event every system publishes.
 */
import { randomUUID } from 'node:crypto';

/** `flowcast-deflate`: flowcast with permessage-deflate negotiated and every event compressed (threshold 0). */
export type System = 'flowcast' | 'flowcast-deflate' | 'socketio' | 'ws';
export const SYSTEMS: readonly System[] = ['flowcast', 'flowcast-deflate', 'socketio', 'ws'];

/** `true` for the arms that run the flowcast server. */
export const isFlowcast = (system: System): boolean => system === 'flowcast' || system === 'flowcast-deflate';

/** The pipeline every bench subscriber follows (flowcast) / the room (Socket.IO). */
export const PIPELINE_ID = 'bench_fanout';

/** Microseconds on the system-wide monotonic clock: comparable between processes of one machine. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * A realistic StepLogEvent draft (about 350 bytes as JSON once the log gave it `v`,
 * `event_id` and `seq`). The first log line starts with the publisher's send time in µs,
 * which subscribers use for latency.
 */
export function logDraft(runId: string, stepIndex: number, sentUs: number) {
  return {
    type: 'StepLogEvent' as const,
    pipeline_id: PIPELINE_ID,
    run_id: runId,
    timestamp: new Date().toISOString(),
    step_name: 'transform',
    step_index: 2,
    task_id: TASK_ID,
    attempt: 1,
    lines: [`${sentUs} batch ${stepIndex}: 500 rows ok`],
  };
}
const TASK_ID = randomUUID();

/** A complete event for the systems without an event log (same shape and size as flowcast's). */
export function plainEvent(runId: string, seq: number, sentUs: number): Record<string, unknown> {
  return { ...logDraft(runId, seq, sentUs), v: 1, event_id: randomUUID(), seq };
}

export interface CpuReport {
  userUs: number;
  systemUs: number;
  wallUs: number;
}

export interface MemReport {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface ExpectReport {
  received: number;
  firstUs: number;
  lastUs: number;
  latencies: { count: number; p50: number; p99: number; max: number } | null;
  timedOut: boolean;
  /** CPU the client process spent meanwhile. */
  clientCpuUs: number;
}

/** The answer to one request over a child's IPC channel (same `reqId`). */
export interface Reply<T> {
  reqId: number;
  ok: boolean;
  error?: string;
  value?: T;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

type Request = { reqId: number } & Record<string, unknown>;

/** In a child process: answers each request from the parent with the handler's result. */
export function serveRequests(handler: (msg: Record<string, unknown>) => unknown): void {
  process.on('message', (raw: unknown) => {
    const msg = raw as Request;
    const send = (reply: Reply<unknown>): void => {
      if (process.connected) process.send?.(reply);
    };
    Promise.resolve()
      .then(() => handler(msg))
      .then(
        (value) => send({ reqId: msg.reqId, ok: true, value }),
        (error: unknown) => send({ reqId: msg.reqId, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
      );
  });
  // The parent went away: nothing left to do.
  process.on('disconnect', () => process.exit(0));
}
