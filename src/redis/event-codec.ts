/**
 * How an event travels through Redis: JSON, encoded once. The event's JSON is built in
 * Node with everything but the seq value (`...,"seq":`); the Lua script that assigns the
 * seq appends `<seq>}`. The finished JSON is remembered per event object so `publish`
 * sends the same bytes without serialising again.
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';
import { checkId, checkObject } from '../core/validate.js';
import { EVENT_SCHEMA_VERSION, isEventType, isTerminalEvent, type EventDraft, type FlowcastEvent } from '../events/types.js';

/** A draft ready for the append script. */
export interface EncodedDraft {
  /** The event object without `seq` yet (completed in place by {@link finishEvent}). */
  event: FlowcastEvent;
  /** Its JSON up to `"seq":`. */
  head: string;
  terminal: boolean;
}

const json = new WeakMap<object, string>();

/** Validates a draft and encodes it. `what` names the caller in errors. */
export function encodeDraft(draft: EventDraft, what: string): EncodedDraft {
  checkObject(draft, `${what}: draft`);
  if (!isEventType(draft.type)) throw new InvalidArgumentError(`${what}: draft.type must be an event type, received ${JSON.stringify(draft.type)}`);
  checkId(draft.run_id, `${what}: draft.run_id`);
  checkId(draft.pipeline_id, `${what}: draft.pipeline_id`);
  // seq, v and event_id are the log's to give: whatever the draft carries is replaced.
  // (A plain loop: object rest and spread cost several times more on this hot path.)
  const event: Record<string, unknown> = {};
  const source = draft as unknown as Record<string, unknown>;
  for (const key in source) {
    if (key !== 'seq' && key !== 'v' && key !== 'event_id' && Object.hasOwn(source, key)) event[key] = source[key];
  }
  return stamp(event);
}

/** Gives an event object (a copy, or a draft encoded in place) its `v`, `event_id` and a seq to come, and encodes it. */
function stamp(event: Record<string, unknown>): EncodedDraft {
  event.v = EVENT_SCHEMA_VERSION;
  event.event_id = randomUUID();
  event.seq = 0;
  const full = JSON.stringify(event);
  const e = event as unknown as FlowcastEvent;
  return { event: e, head: full.slice(0, -2), terminal: isTerminalEvent(e) };
}

/** The last pipeline id {@link encodeOwnDraft} validated (the runs of a process mostly share a few). */
let checkedPipelineId = '';

/**
 * Encodes a draft a transition just made, in place: the draft object itself becomes the
 * event (it is given `v`, `event_id` and, through {@link finishEvent}, `seq`), without the
 * copy {@link encodeDraft} makes of a caller's draft. A draft that already carries one of
 * those fields, or that cannot be changed, is encoded by {@link encodeDraft} instead.
 * The caller checks `run_id` (it must be the run the transition is of).
 */
export function encodeOwnDraft(draft: EventDraft, what: string): EncodedDraft {
  checkObject(draft, `${what}: draft`);
  const d = draft as unknown as Record<string, unknown>;
  if (Object.hasOwn(d, 'seq') || Object.hasOwn(d, 'v') || Object.hasOwn(d, 'event_id') || !Object.isExtensible(d)) return encodeDraft(draft, what);
  if (!isEventType(draft.type)) throw new InvalidArgumentError(`${what}: draft.type must be an event type, received ${JSON.stringify(draft.type)}`);
  if (draft.pipeline_id !== checkedPipelineId) checkedPipelineId = checkId(draft.pipeline_id, `${what}: draft.pipeline_id`);
  return stamp(d);
}

/**
 * Gives the event its seq and remembers its JSON, unless `remember` is false (the event
 * was published where it was appended: this process will not send it again).
 */
export function finishEvent(encoded: EncodedDraft, seq: number, remember = true): FlowcastEvent {
  encoded.event.seq = seq;
  if (remember) json.set(encoded.event, `${encoded.head}${seq}}`);
  return encoded.event;
}

/** Remembers the JSON an event was read or received as. */
export function rememberJson(event: FlowcastEvent, text: string): FlowcastEvent {
  json.set(event, text);
  return event;
}

/** The event's JSON: the stored bytes when this process appended or received it. */
export function eventJson(event: FlowcastEvent): string {
  return json.get(event) ?? JSON.stringify(event);
}

/** Parses an event read from the log or a channel; `null` when it is not an event. */
export function parseEvent(text: string): FlowcastEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const e = value as Partial<FlowcastEvent>;
  if (!isEventType(e.type) || typeof e.run_id !== 'string' || typeof e.pipeline_id !== 'string' || typeof e.seq !== 'number') return null;
  return rememberJson(value as FlowcastEvent, text);
}
