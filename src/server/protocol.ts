/**
 * The WebSocket protocol (DESIGN §3): client messages as JSON Schemas (TypeBox), the
 * validator the server runs on every incoming frame, and the server's control messages.
 * docs/protocol.md is generated from the same schemas (`npm run docs:protocol`).
 */
import { FormatRegistry, Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { EngineStatus } from '../core/engine-status.js';
import { EVENT_TYPES } from '../events/types.js';
import { jsonDepth, MAX_JSON_DEPTH, tooDeepMessage } from './json-limits.js';

// TypeBox checks formats only once they are registered: ISO 8601 date-times as events carry them.
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)));
}

const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_.:\\-/@*]+$' });
const RequestId = Type.Optional(Type.Union([Type.String({ maxLength: 100 }), Type.Number()], { description: 'Echoed in the reply, to match replies to requests.' }));
const EventTypeList = Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), {
  minItems: 1,
  maxItems: EVENT_TYPES.length,
  uniqueItems: true,
  description: 'Only these event types are sent for this subscription (filtered on the server).',
});

/** A server channel that carries no run events: `engine` gets an `engine_status` message every ~2 s. */
const Channel = Type.Literal('engine', { description: 'A server channel instead of a pipeline or run: "engine" pushes engine_status messages.' });

/** `{"type":"subscribe","pipeline_id":"x"}`, `"*"` for every pipeline, `run_id` (with `since` to replay), or `channel: "engine"`. */
export const SubscribeMessage = Type.Object(
  {
    type: Type.Literal('subscribe'),
    pipeline_id: Type.Optional(Id),
    run_id: Type.Optional(Id),
    since: Type.Optional(Type.Integer({ minimum: 0, description: 'With run_id: replay the events after this seq, then follow live.' })),
    started_since: Type.Optional(
      Type.String({
        format: 'date-time',
        maxLength: 40,
        description:
          'With pipeline_id: also replay, from their first event, the runs started at or after this time that this connection has not seen (a reconnecting client sends the time of the last event it got, minus a margin, and so also gets the runs that began and ended while it was away).',
      }),
    ),
    positions: Type.Optional(
      Type.Boolean({ description: 'With pipeline_id: also send a position message for each run of the pipeline (or of every pipeline) that starts or ends, to resume from with offset.' }),
    ),
    offset: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'With pipeline_id: resume after this offset of the run stream (the last position received): the runs that started after it are replayed from their first event; positions follow.',
      }),
    ),
    epoch: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'With since or offset: the epoch they belong to (from subscribed); another epoch is another history, and the server says so.' }),
    ),
    event_types: Type.Optional(EventTypeList),
    channel: Type.Optional(Channel),
    id: RequestId,
  },
  { additionalProperties: false, $id: 'SubscribeMessage' },
);

/** `{"type":"unsubscribe","pipeline_id":"x"}` or with `run_id`. */
export const UnsubscribeMessage = Type.Object(
  {
    type: Type.Literal('unsubscribe'),
    pipeline_id: Type.Optional(Id),
    run_id: Type.Optional(Id),
    channel: Type.Optional(Channel),
    id: RequestId,
  },
  { additionalProperties: false, $id: 'UnsubscribeMessage' },
);

/** `{"type":"ping"}`: the server answers `pong`. */
export const PingMessage = Type.Object({ type: Type.Literal('ping'), id: RequestId }, { additionalProperties: false, $id: 'PingMessage' });

/** Every message a client may send (the JSON Schema the server checks them against). */
export const ClientMessage = Type.Union([SubscribeMessage, UnsubscribeMessage, PingMessage], { $id: 'ClientMessage' });

/** `subscribe`: follow a run, a pipeline, `*` or the engine channel. */
export type SubscribeMessage = Static<typeof SubscribeMessage>;
/** `unsubscribe`: stop following a run, a pipeline, `*` or the engine channel. */
export type UnsubscribeMessage = Static<typeof UnsubscribeMessage>;
/** `ping`: the server answers `pong`. */
export type PingMessage = Static<typeof PingMessage>;
/** Every message a client may send. */
export type ClientMessage = Static<typeof ClientMessage>;

const checkers = {
  subscribe: TypeCompiler.Compile(SubscribeMessage),
  unsubscribe: TypeCompiler.Compile(UnsubscribeMessage),
  ping: TypeCompiler.Compile(PingMessage),
};

/** Error codes of `error` messages (and of REST errors). */
export const ProtocolErrors = {
  BAD_JSON: 'bad_json',
  BAD_MESSAGE: 'bad_message',
  BINARY_NOT_SUPPORTED: 'binary_not_supported',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  NOT_SUBSCRIBED: 'not_subscribed',
  RATE_LIMITED: 'rate_limited',
  TOO_MANY_SUBSCRIPTIONS: 'too_many_subscriptions',
  INTERNAL: 'internal_error',
} as const;
/** The `code` of an `error` message: one of {@link ProtocolErrors}. */
export type ProtocolErrorCode = (typeof ProtocolErrors)[keyof typeof ProtocolErrors];

/** What parsing one client frame gives: the message, or the error to answer with. */
export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; code: ProtocolErrorCode; message: string; id?: string | number };

/** Parses and validates one text frame. Never throws. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  if (jsonDepth(text) > MAX_JSON_DEPTH) return { ok: false, code: ProtocolErrors.BAD_MESSAGE, message: tooDeepMessage() };
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, code: ProtocolErrors.BAD_JSON, message: `Not JSON: ${(error as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: ProtocolErrors.BAD_MESSAGE, message: 'A message must be a JSON object with a "type"' };
  }
  const obj = value as Record<string, unknown>;
  const id = typeof obj.id === 'string' || typeof obj.id === 'number' ? obj.id : undefined;
  const fail = (message: string): ParseResult => (id === undefined ? { ok: false, code: ProtocolErrors.BAD_MESSAGE, message } : { ok: false, code: ProtocolErrors.BAD_MESSAGE, message, id });
  const type = obj.type;
  if (type !== 'subscribe' && type !== 'unsubscribe' && type !== 'ping') {
    return fail(`Unknown message type ${JSON.stringify(type)}: expected "subscribe", "unsubscribe" or "ping"`);
  }
  const checker = checkers[type];
  if (!checker.Check(value)) {
    const first = checker.Errors(value).First();
    const where = first?.path === undefined || first.path === '' ? 'message' : first.path.slice(1);
    return fail(`Invalid ${type} message: ${where}: ${first?.message ?? 'does not match the schema'}`);
  }
  const msg = value;
  if (msg.type !== 'ping') {
    const hasPipeline = msg.pipeline_id !== undefined;
    const hasRun = msg.run_id !== undefined;
    const hasChannel = msg.channel !== undefined;
    if (Number(hasPipeline) + Number(hasRun) + Number(hasChannel) !== 1) return fail(`A ${msg.type} message needs exactly one of "pipeline_id", "run_id" and "channel"`);
    if (hasChannel && msg.type === 'subscribe' && msg.event_types !== undefined) return fail('"event_types" does not apply to a channel');
    if (hasRun && msg.run_id === '*') return fail('"run_id" cannot be "*": subscribe with "pipeline_id": "*" for every run');
    if (msg.type === 'subscribe' && msg.since !== undefined && !hasRun) return fail('"since" needs "run_id": a seq belongs to one run');
    if (msg.type === 'subscribe' && msg.started_since !== undefined && !hasPipeline) return fail('"started_since" needs "pipeline_id": it picks runs of a pipeline (or "*") by start time');
    if (msg.type === 'subscribe' && (msg.positions !== undefined || msg.offset !== undefined) && !hasPipeline) {
      return fail('"positions" and "offset" need "pipeline_id": they are positions in a pipeline\'s (or "*"\'s) run stream');
    }
    if (msg.type === 'subscribe' && msg.epoch !== undefined && msg.since === undefined && msg.offset === undefined) return fail('"epoch" goes with "since" or "offset": it says which history they belong to');
  }
  return { ok: true, message: msg };
}

/** The server's control messages: their `type` is one no seed client handles, so seed clients ignore them. */
export interface SubscribedMessage {
  type: 'subscribed';
  pipeline_id?: string;
  run_id?: string;
  channel?: 'engine';
  event_types?: string[];
  /** The epoch of the server's history: send it back with `since` or `offset`. */
  epoch?: string;
  /** A positioned pipeline subscription: positions follow from `offset + 1`. */
  offset?: number;
  /** A resume with `offset`: `false` when it could not resume from there (`reason`). */
  recovered?: boolean;
  reason?: 'epoch' | 'trimmed' | 'unknown';
  id?: string | number;
}
/** A run of the subscription's run stream (`stream`: its pipeline, or `*`) started, was resumed or ended; `offset` is the position to resume from. */
export interface PositionMessage {
  type: 'position';
  stream: string;
  offset: number;
  kind: 'start' | 'resume' | 'end';
  run_id: string;
  pipeline_id: string;
  /** On `resume` only: the seq of the run's PipelineResumeEvent; the run's events follow from there. (Not `seq`: a message with `seq` is an event.) */
  resume_seq?: number;
}
/** The answer to `unsubscribe`: the subscription is gone. */
export interface UnsubscribedMessage {
  type: 'unsubscribed';
  pipeline_id?: string;
  run_id?: string;
  channel?: 'engine';
  id?: string | number;
}
/** The answer to `ping`, with the server time. */
export interface PongMessage {
  type: 'pong';
  timestamp: string;
  id?: string | number;
}
/** A refused message (bad JSON, a bad field, no right, a limit), with its `id` when it had one; the connection stays open. */
export interface ErrorMessage {
  type: 'error';
  code: ProtocolErrorCode;
  message: string;
  id?: string | number;
}
/** A run's tracked status, sent to a late joiner before the run's live events (which follow from `last_seq + 1`). */
export interface SnapshotMessage {
  type: 'snapshot';
  pipeline_id: string;
  run_id: string;
  last_seq: number;
  status: unknown;
}
/** An explicit replay (`since`) caught up: live events follow from `last_seq + 1`. */
export interface ReplayCompleteMessage {
  type: 'replay_complete';
  run_id: string;
  /** The last seq replayed; live events follow from the next one. */
  last_seq: number;
}
/** The log no longer holds what was asked: the replay starts at `first_seq` instead of `since + 1`. */
export interface ReplayIncompleteMessage {
  type: 'replay_incomplete';
  run_id: string;
  requested_since: number;
  first_seq: number;
  last_seq: number;
  /** `epoch`: the `since` belonged to another history (the log starts over from `first_seq`); else retention trimmed. */
  reason?: 'trimmed' | 'epoch';
  /** With reason `epoch`: the server's epoch now. */
  epoch?: string;
}
/** Pushed to subscribers of the `engine` channel every ~2 s (and once at once): the body of `GET /api/engine`. */
export type EngineStatusMessage = { type: 'engine_status' } & EngineStatus;

/** Every message the server sends that is not an event. */
export type ServerControlMessage =
  | EngineStatusMessage
  | SubscribedMessage
  | UnsubscribedMessage
  | PongMessage
  | ErrorMessage
  | SnapshotMessage
  | PositionMessage
  | ReplayCompleteMessage
  | ReplayIncompleteMessage;

/** Close codes the server uses (4000-4999 are the application's). */
export const CloseCodes = {
  /** The token was missing or invalid (seed 000 §10.1). */
  UNAUTHORIZED: 4001,
  /** The connection sent too many messages too fast, again after a warning. */
  RATE_LIMITED: 4029,
  /** The connection could not keep up: its outgoing queue passed the hard cap. Reconnect with `since`. */
  SLOW_CONSUMER: 4008,
  /** The server is full (`maxConnections`). */
  TOO_MANY_CONNECTIONS: 4013,
  /** The peer did not answer pings. */
  HEARTBEAT_TIMEOUT: 4002,
  /** The server is shutting down. */
  GOING_AWAY: 1001,
  /** The event history was lost (a Redis restarted without its data): resume, and be told what no longer holds. */
  HISTORY_RESET: 4010,
} as const;

/** All schemas, for docs and the OpenAPI document. */
export const PROTOCOL_SCHEMAS: Record<string, TSchema> = { SubscribeMessage, UnsubscribeMessage, PingMessage };
