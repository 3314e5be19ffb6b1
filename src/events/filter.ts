import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';
import { isEventType, type EventType, type FlowcastEvent } from './types.js';

/** Options of {@link EventFilter}: an event passes when it matches every list given. */
export interface EventFilterOptions {
  /** Only events of these pipelines. */
  pipelineIds?: readonly string[];
  /** Only these event types. */
  eventTypes?: readonly EventType[];
  /** Only events of these runs. */
  runIds?: readonly string[];
}

function stringList(value: unknown, name: string): Set<string> | null {
  if (value === undefined) return null;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v.length === 0)) {
    throw new InvalidArgumentError(`EventFilter ${name} must be an array of non-empty strings, received ${show(value)}`);
  }
  return new Set(value as string[]);
}

/**
 * Decides which events a {@link HookManager} passes on (seed 000 §7). Subclass it and
 * override {@link shouldEmit} for rules of your own (seed 000 §10.2's `AuthFilter`).
 *
 * @example
 * hooks.addFilter(new EventFilter({ pipelineIds: ['pipeline_1', 'pipeline_2'] }));
 * hooks.addFilter(new EventFilter({ eventTypes: ['StepStartEvent', 'StepCompleteEvent'] }));
 */
export class EventFilter {
  readonly pipelineIds: ReadonlySet<string> | null;
  readonly eventTypes: ReadonlySet<string> | null;
  readonly runIds: ReadonlySet<string> | null;

  constructor(options: EventFilterOptions = {}) {
    checkKnownKeys(checkObject(options, 'EventFilter options'), ['pipelineIds', 'eventTypes', 'runIds'], 'EventFilter options');
    this.pipelineIds = stringList(options.pipelineIds, 'pipelineIds');
    this.runIds = stringList(options.runIds, 'runIds');
    this.eventTypes = stringList(options.eventTypes, 'eventTypes');
    for (const t of this.eventTypes ?? []) {
      if (!isEventType(t)) throw new InvalidArgumentError(`EventFilter eventTypes has an unknown event type ${show(t)}`);
    }
  }

  /** `true` when the event passes this filter. */
  shouldEmit(event: FlowcastEvent): boolean {
    if (this.pipelineIds !== null && !this.pipelineIds.has(event.pipeline_id)) return false;
    if (this.runIds !== null && !this.runIds.has(event.run_id)) return false;
    if (this.eventTypes !== null && !this.eventTypes.has(event.type)) return false;
    return true;
  }
}
