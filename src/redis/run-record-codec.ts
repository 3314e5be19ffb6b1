/**
 * How {@link RedisRunState} stores a run's record in Redis: JSON without the plan (kept
 * apart, once per run), whose step states leave out their null fields, and the summary
 * that `getSummary` reads without the record.
 */
import type { PipelinePlan } from '../pipeline/plan.js';
import type { RunRecord, RunSummary, StepState } from '../pipeline/run-state.js';

/** The summary of a record, as stored next to it (field `sum`). */
export function summaryOf(r: RunRecord): RunSummary {
  return { run_id: r.run_id, pipeline_id: r.pipeline_id, status: r.status, result: r.result, error: r.error };
}

/** A step's state as stored: the fields still null (most of a run's steps, most of the time) left out. */
function stepJson(st: StepState): string {
  let json = `{"phase":"${st.phase}","attempt":${st.attempt}`;
  if (st.started_at_ms !== null) json += `,"started_at_ms":${st.started_at_ms}`;
  if (st.task_id !== null) json += `,"task_id":${JSON.stringify(st.task_id)}`;
  if (st.carrier !== undefined) json += `,"carrier":${JSON.stringify(st.carrier)}`;
  if (st.result !== null && st.result !== undefined) json += `,"result":${JSON.stringify(st.result)}`;
  if (st.error !== null) json += `,"error":${JSON.stringify(st.error)}`;
  if (st.items !== null) json += `,"items":${JSON.stringify(st.items)}`;
  return `${json}}`;
}

/**
 * The record without its plan, as stored: JSON whose step states leave out their null
 * fields ({@link parseRecord} puts them back). A run's record travels with every
 * transition: what a pending step does not say is not sent.
 */
export function recordJson(r: RunRecord): string {
  // The plan and steps left out by unsetting them for the call: an object rest copy costs more on this hot path.
  const { plan, steps } = r;
  (r as { plan: PipelinePlan | undefined }).plan = undefined;
  (r as { steps: RunRecord['steps'] | undefined }).steps = undefined;
  let json: string;
  try {
    json = JSON.stringify(r);
  } finally {
    r.plan = plan;
    r.steps = steps;
  }
  let out = `${json.slice(0, -1)},"steps":{`;
  let first = true;
  for (const name in steps) {
    out += `${first ? '' : ','}${JSON.stringify(name)}:${stepJson(steps[name] as StepState)}`;
    first = false;
  }
  return `${out}}}`;
}

/** A stored record (see {@link recordJson}) with every step state whole again, fields in their usual order. */
export function parseRecord(json: string): RunRecord {
  const r = JSON.parse(json) as RunRecord;
  const steps: Record<string, StepState> = {};
  for (const name in r.steps) {
    const s = r.steps[name] as Partial<StepState> & Pick<StepState, 'phase' | 'attempt'>;
    const st: StepState = {
      phase: s.phase,
      attempt: s.attempt,
      started_at_ms: s.started_at_ms ?? null,
      task_id: s.task_id ?? null,
      result: s.result ?? null,
      error: s.error ?? null,
      items: s.items ?? null,
    };
    if (s.carrier !== undefined) st.carrier = s.carrier;
    steps[name] = st;
  }
  r.steps = steps;
  return r;
}
