/**
 * JSON Schemas of every message the server sends over WebSocket (and as SSE `data:`):
 * the run events (seed 000 §3 plus flowcast's additions) and the control messages. The
 * client messages' schemas live in `protocol.ts`, next to the validator. docs/protocol.md
 * shows all of them (`npm run docs:protocol` rewrites its schema blocks; a test checks
 * the document matches and that real messages validate). Importing `protocol.js`
 * registers the `date-time` format with TypeBox.
 *
 * Events are closed (`additionalProperties: false`) so that the document says exactly
 * what is sent; clients should still ignore fields they do not know, since a later minor
 * version may add optional ones (a breaking change bumps the events' `v`).
 */
import { Type, type TObject, type TProperties, type TSchema } from '@sinclair/typebox';
import { EVENT_SCHEMA_VERSION, type EventType } from '../events/types.js';
import { PROTOCOL_SCHEMAS } from './protocol.js';

const Json = Type.Unknown({ description: 'Any JSON value.' });
const Iso = Type.String({ format: 'date-time', description: 'ISO 8601, UTC, millisecond precision.' });
const Seq = Type.Integer({ minimum: 1 });
const Nat = Type.Integer({ minimum: 0 });
const PipelineType = Type.Union([Type.Literal('sequential'), Type.Literal('dataflow')]);
const RequestId = Type.Optional(Type.Union([Type.String(), Type.Number()], { description: 'The id of the request this answers, when it had one.' }));

const Base = {
  v: Type.Literal(EVENT_SCHEMA_VERSION, { description: 'Version of the event schema.' }),
  event_id: Type.String({ description: 'Unique id of the event (UUID): dedupe on it or on (run_id, seq).' }),
  pipeline_id: Type.String(),
  run_id: Type.String(),
  seq: Type.Integer({ minimum: 1, description: 'Position in the run: 1, 2, 3… with no gap in the run\'s log (a log fed through a filter, and a subscription with event_types, skip seqs: no loss).' }),
  timestamp: Iso,
};
const Step = {
  step_name: Type.String(),
  step_index: Nat,
  task_id: Type.String({ description: 'Id of this attempt\'s task call.' }),
};

function event(type: EventType, fields: TProperties, description: string): TObject {
  const properties: TProperties = { type: Type.Literal(type), ...Base, ...fields };
  return Type.Object(properties, { additionalProperties: false, $id: type, description });
}

const StepDescriptor = Type.Object(
  {
    step_name: Type.String(),
    step_index: Nat,
    kind: Type.Union(['call', 'after', 'map', 'filter', 'group'].map((k) => Type.Literal(k))),
    tasks: Type.Array(Type.String()),
    depends_on: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);
const Dag = Type.Object({ nodes: Type.Array(Type.String()), edges: Type.Array(Type.Tuple([Type.String(), Type.String()])) }, { additionalProperties: false });

/** One schema per event type. */
export const EVENT_SCHEMAS: Record<EventType, TObject> = {
  PipelineStartEvent: event(
    'PipelineStartEvent',
    { pipeline_type: PipelineType, input: Json, steps: Type.Array(StepDescriptor), dag: Type.Optional(Dag) },
    'A run started (seq 1).',
  ),
  StepStartEvent: event(
    'StepStartEvent',
    { ...Step, attempt: Seq, task_name: Type.String(), items: Type.Optional(Type.Integer({ minimum: 0, description: 'map/filter/group: how many items.' })) },
    'A step (or an attempt of it) started.',
  ),
  StepCompleteEvent: event('StepCompleteEvent', { ...Step, result: Json, duration_ms: Type.Number({ minimum: 0 }), attempt: Seq }, 'A step completed.'),
  StepErrorEvent: event('StepErrorEvent', { ...Step, error: Type.String(), duration_ms: Type.Number({ minimum: 0 }), attempt: Seq }, 'A step failed for good (no retry left).'),
  StepProgressEvent: event(
    'StepProgressEvent',
    { ...Step, progress: Type.Number({ minimum: 0, maximum: 1 }), message: Type.Optional(Type.String()), attempt: Seq },
    'A step reported progress (0..1). A slow consumer may get only the latest of a burst.',
  ),
  StepLogEvent: event(
    'StepLogEvent',
    { ...Step, lines: Type.Array(Type.String(), { minItems: 1 }), attempt: Seq, item: Type.Optional(Nat) },
    'Log lines a task wrote, in order.',
  ),
  StepRetryEvent: event(
    'StepRetryEvent',
    { ...Step, attempt: Seq, delay_ms: Type.Number({ minimum: 0 }), error: Type.String(), item: Type.Optional(Nat) },
    'An attempt failed; attempt `attempt` follows after `delay_ms`.',
  ),
  StepSkipEvent: event('StepSkipEvent', { step_name: Type.String(), step_index: Nat, reason: Type.String() }, 'A step will not run (a dependency failed, or the run ended).'),
  PipelineCompleteEvent: event(
    'PipelineCompleteEvent',
    { pipeline_type: PipelineType, status: Type.Literal('COMPLETED'), duration_ms: Type.Number({ minimum: 0 }), result: Json },
    'The run completed: its last event.',
  ),
  PipelineErrorEvent: event(
    'PipelineErrorEvent',
    { pipeline_type: PipelineType, status: Type.Literal('FAILED'), error: Type.String(), duration_ms: Type.Number({ minimum: 0 }), step_name: Type.Optional(Type.String()) },
    'The run failed: its last event.',
  ),
  PipelineCancelledEvent: event(
    'PipelineCancelledEvent',
    { pipeline_type: PipelineType, status: Type.Literal('CANCELLED'), reason: Type.String(), duration_ms: Type.Number({ minimum: 0 }) },
    'The run was cancelled: its last event (unless it is resumed).',
  ),
  PipelineResumeEvent: event(
    'PipelineResumeEvent',
    {
      pipeline_type: PipelineType,
      attempt: Type.Integer({ minimum: 2, description: 'The run\'s attempt that starts now (2 for the first resume).' }),
      previous_status: Type.Union([Type.Literal('FAILED'), Type.Literal('CANCELLED')], { description: 'How the previous attempt ended.' }),
      kept_steps: Type.Array(Type.String(), { description: 'Steps that completed before: their results are kept, they do not run again.' }),
      pending_steps: Type.Array(Type.String(), { description: 'Steps that run in this attempt, in definition order.' }),
    },
    'A FAILED or CANCELLED run continues as a new attempt of the same run, right after its terminal event: it is RUNNING again until its next terminal event.',
  ),
};

const Target = {
  pipeline_id: Type.Optional(Type.String()),
  run_id: Type.Optional(Type.String()),
  channel: Type.Optional(Type.Literal('engine')),
};

const WorkerStatus = Type.Object(
  {
    id: Type.String(),
    host: Type.String(),
    pid: Nat,
    state: Type.Union([Type.Literal('busy'), Type.Literal('idle')]),
    active_jobs: Nat,
    concurrency: Nat,
    started_at: Iso,
    last_heartbeat: Iso,
    processed: Nat,
  },
  { additionalProperties: false },
);
const QueueStatus = Type.Object({ name: Type.String(), waiting: Nat, active: Nat, delayed: Nat, failed: Nat }, { additionalProperties: false });
const InstanceStatus = Type.Object(
  { id: Type.String(), host: Type.String(), pid: Nat, clients: Nat, started_at: Iso, last_heartbeat: Iso },
  { additionalProperties: false },
);

/** Control messages: their `type` is lower-case, which no seed client handles, so seed clients ignore them. */
export const CONTROL_SCHEMAS: Record<string, TObject> = {
  SubscribedMessage: Type.Object(
    {
      type: Type.Literal('subscribed'),
      ...Target,
      event_types: Type.Optional(Type.Array(Type.String())),
      epoch: Type.Optional(Type.String({ description: 'The epoch of the server\'s history: send it back with since or offset.' })),
      offset: Type.Optional(Type.Integer({ minimum: 0, description: 'A positioned pipeline subscription: position messages follow from offset + 1.' })),
      recovered: Type.Optional(Type.Boolean({ description: 'A resume with offset: false when it could not resume from there (see reason).' })),
      reason: Type.Optional(
        Type.Union([Type.Literal('epoch'), Type.Literal('trimmed'), Type.Literal('unknown')], {
          description: 'Why not: epoch (another history), trimmed (the run stream no longer holds what follows the offset), unknown (an offset the stream never reached).',
        }),
      ),
      id: RequestId,
    },
    { additionalProperties: false, $id: 'SubscribedMessage', description: 'The subscription is in place; for a run subscription its replay follows.' },
  ),
  PositionMessage: Type.Object(
    {
      type: Type.Literal('position'),
      stream: Type.String({ description: 'The run stream: the subscription\'s pipeline_id, or "*".' }),
      offset: Type.Integer({ minimum: 1, description: 'Position in the run stream: 1, 2, 3… Resume after the last one received with offset.' }),
      kind: Type.Union([Type.Literal('start'), Type.Literal('resume'), Type.Literal('end')]),
      run_id: Type.String(),
      pipeline_id: Type.String({ description: 'The run\'s pipeline.' }),
      resume_seq: Type.Optional(Type.Integer({ minimum: 1, description: 'On `resume` only: the seq of the run\'s PipelineResumeEvent; the run\'s events follow from there.' })),
    },
    {
      additionalProperties: false,
      $id: 'PositionMessage',
      description: 'A run of a positioned subscription started (before any of its events), was resumed (before its PipelineResumeEvent) or ended.',
    },
  ),
  UnsubscribedMessage: Type.Object(
    { type: Type.Literal('unsubscribed'), ...Target, id: RequestId },
    { additionalProperties: false, $id: 'UnsubscribedMessage', description: 'The subscription is gone: no more events for it.' },
  ),
  PongMessage: Type.Object({ type: Type.Literal('pong'), timestamp: Iso, id: RequestId }, { additionalProperties: false, $id: 'PongMessage', description: 'The answer to ping.' }),
  ErrorMessage: Type.Object(
    { type: Type.Literal('error'), code: Type.String({ description: 'Stable, snake_case: branch on it (see the table).' }), message: Type.String(), id: RequestId },
    { additionalProperties: false, $id: 'ErrorMessage', description: 'A message was refused; the connection stays open (unless the close that follows says otherwise).' },
  ),
  SnapshotMessage: Type.Object(
    {
      type: Type.Literal('snapshot'),
      pipeline_id: Type.String(),
      run_id: Type.String(),
      last_seq: Nat,
      status: Type.Unknown({ description: 'The run\'s tracked status (the body of GET /api/runs/{run_id}).' }),
    },
    { additionalProperties: false, $id: 'SnapshotMessage', description: 'A run in flight when a pipeline subscription started: its state up to last_seq; its live events follow from last_seq + 1.' },
  ),
  ReplayCompleteMessage: Type.Object(
    { type: Type.Literal('replay_complete'), run_id: Type.String(), last_seq: Nat },
    { additionalProperties: false, $id: 'ReplayCompleteMessage', description: 'The replay of a run subscription is done up to last_seq; live events follow.' },
  ),
  ReplayIncompleteMessage: Type.Object(
    {
      type: Type.Literal('replay_incomplete'),
      run_id: Type.String(),
      requested_since: Nat,
      first_seq: Nat,
      last_seq: Nat,
      reason: Type.Optional(
        Type.Union([Type.Literal('trimmed'), Type.Literal('epoch')], {
          description: 'epoch: the since belonged to another history (the run\'s log starts over from first_seq: forget what you hold of it); trimmed (or none): retention trimmed it.',
        }),
      ),
      epoch: Type.Optional(Type.String({ description: 'With reason epoch: the server\'s epoch now.' })),
    },
    {
      additionalProperties: false,
      $id: 'ReplayIncompleteMessage',
      description: 'The replay cannot start at requested_since + 1: it starts at first_seq (retention trimmed what was asked, or the history is another one).',
    },
  ),
  EngineStatusMessage: Type.Object(
    {
      type: Type.Literal('engine_status'),
      at: Iso,
      broker: Type.String(),
      workers: Type.Array(WorkerStatus),
      queues: Type.Array(QueueStatus),
      server: Type.Object({ id: Type.String(), clients: Nat, events_per_second: Type.Number({ minimum: 0 }) }, { additionalProperties: false }),
      instances: Type.Array(InstanceStatus),
    },
    { additionalProperties: false, $id: 'EngineStatusMessage', description: 'Pushed to subscribers of the engine channel: workers, queues, this server and every server instance.' },
  ),
};

/** Every schema of the protocol by name: client messages, control messages, events. */
export function allProtocolSchemas(): Record<string, TSchema> {
  return { ...PROTOCOL_SCHEMAS, ...CONTROL_SCHEMAS, ...EVENT_SCHEMAS };
}
