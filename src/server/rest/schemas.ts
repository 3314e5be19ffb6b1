/**
 * TypeBox schemas of the REST API: the query and path parameters Fastify validates, and
 * the response bodies the OpenAPI document describes. Responses are documented, not
 * enforced: Fastify serialises them with plain JSON.stringify.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { EVENT_TYPES } from '../../events/types.js';
import { PIPELINE_STATUSES, STEP_STATUSES } from '../../tracking/models.js';

/** Run and pipeline ids: what `checkId` accepts. */
export const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_.:\\-/@]+$' });

/** `schema` or null. */
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** A string enum (one `enum` keyword, so a bad value gets one clear message). */
export function StringEnum<T extends string>(values: readonly T[], options: { description?: string } = {}) {
  return Type.Unsafe<T>({ type: 'string', enum: [...values], ...options });
}

/** The JSON Schema of a run status value. */
export const RunStatusValue = StringEnum(PIPELINE_STATUSES, { description: 'Status of a run.' });

/** The body of every error answer. */
export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable, snake_case: branch on it.' }),
      message: Type.String({ description: 'For people: says what was wrong and the value received.' }),
    }),
  },
  { $id: 'Error' },
);

/** The JSON Schema of a tracked step. */
export const StepStatusSchema = Type.Object(
  {
    step_name: Type.String(),
    step_index: Type.Integer({ minimum: 0 }),
    kind: StringEnum(['call', 'after', 'map', 'filter', 'group'] as const),
    task_names: Type.Array(Type.String()),
    depends_on: Type.Array(Type.String()),
    status: StringEnum(STEP_STATUSES),
    started_at: Nullable(Type.String({ format: 'date-time' })),
    completed_at: Nullable(Type.String({ format: 'date-time' })),
    duration_ms: Nullable(Type.Number()),
    result: Type.Unknown({ description: 'The step\'s return value (JSON), null until completed.' }),
    error: Nullable(Type.String()),
    attempts: Type.Integer({ minimum: 0 }),
    progress: Type.Number({ minimum: 0, maximum: 1 }),
    message: Nullable(Type.String()),
    task_id: Nullable(Type.String()),
    log_lines: Type.Integer({ minimum: 0 }),
    skip_reason: Nullable(Type.String()),
  },
  { $id: 'StepStatus' },
);

/** The JSON Schema of a tracked run. */
export const RunStatusSchema = Type.Object(
  {
    pipeline_id: Type.String(),
    run_id: Type.String(),
    status: RunStatusValue,
    pipeline_type: StringEnum(['sequential', 'dataflow'] as const),
    started_at: Nullable(Type.String({ format: 'date-time' })),
    completed_at: Nullable(Type.String({ format: 'date-time' })),
    duration_ms: Nullable(Type.Number()),
    steps: Type.Array(StepStatusSchema),
    result: Type.Unknown({ description: 'The run\'s result (JSON), null until completed.' }),
    error: Nullable(Type.String({ description: 'The error once failed, the reason once cancelled.' })),
    input: Type.Unknown({ description: 'The run\'s input (JSON).' }),
    last_seq: Type.Integer({ minimum: 0, description: 'Seq of the last event applied: follow the run\'s log from last_seq + 1.' }),
    progress: Type.Number({ minimum: 0, maximum: 1 }),
    current_step: Nullable(Type.String()),
    updated_at: Type.String({ format: 'date-time' }),
    dag: Type.Optional(Type.Object({ nodes: Type.Array(Type.String()), edges: Type.Array(Type.Tuple([Type.String(), Type.String()])) })),
  },
  { $id: 'RunStatus', description: 'A tracked run (seed 001 §3 PipelineStatus, plus run_id, last_seq, attempts and progress).' },
);

/** The JSON Schema of an event (its common fields; the rest is per type). */
export const EventSchema = Type.Object(
  {
    type: StringEnum(EVENT_TYPES),
    v: Type.Literal(1),
    event_id: Type.String(),
    pipeline_id: Type.String(),
    run_id: Type.String(),
    seq: Type.Integer({ minimum: 1 }),
    timestamp: Type.String({ format: 'date-time' }),
  },
  { $id: 'Event', additionalProperties: true, description: 'A run event; the per-type fields are in docs/protocol.md.' },
);

/** The JSON Schema of `GET /api/metrics`. */
export const MetricsSchema = Type.Object(
  {
    period_days: Type.Number(),
    since: Type.String({ format: 'date-time' }),
    total_pipelines: Type.Integer(),
    completed: Type.Integer(),
    failed: Type.Integer(),
    cancelled: Type.Integer(),
    running: Type.Integer(),
    success_rate: Type.Number({ minimum: 0, maximum: 1 }),
    avg_duration_ms: Nullable(Type.Number()),
    p50_duration_ms: Nullable(Type.Number()),
    p95_duration_ms: Nullable(Type.Number()),
    failure_reasons: Type.Record(Type.String(), Type.Integer()),
    throughput_per_minute: Type.Number(),
    avg_step_duration_ms: Type.Record(Type.String(), Type.Number()),
    slowest_steps: Type.Array(
      Type.Object({ step_name: Type.String(), avg_duration_ms: Type.Number(), max_duration_ms: Type.Number(), count: Type.Integer() }),
    ),
    busy_hours: Type.Array(Type.Integer(), { minItems: 24, maxItems: 24 }),
    by_pipeline: Type.Record(
      Type.String(),
      Type.Object({ total: Type.Integer(), completed: Type.Integer(), failed: Type.Integer(), avg_duration_ms: Nullable(Type.Number()) }),
    ),
  },
  { $id: 'Metrics', description: 'Statistics of the runs started in the last period_days (docs/tracking.md).' },
);

/** `{run_id}` path parameters. */
export const RunIdParams = Type.Object({ run_id: Id });
/** `{pipeline_id}` path parameters. */
export const PipelineIdParams = Type.Object({ pipeline_id: Id });
