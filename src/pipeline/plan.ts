import { FlowcastError, ErrorCodes } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Backoff } from '../core/task.js';
import type { DagDescriptor, PipelineType, StepDescriptor, StepKind } from '../events/types.js';

/** What a dataflow run does when a step fails for good. */
export type FailurePolicy = 'fail_fast' | 'continue';

/** One step of a plan. Plain JSON, so any worker can continue the run. */
export interface PlanStep {
  name: string;
  index: number;
  kind: StepKind;
  /** Task names: one, or several for `group`. */
  tasks: string[];
  depends_on: string[];
  /** Wrap the step's input as `{ ...args, [param_name]: input }`. */
  param_name?: string;
  /** Fixed fields merged into the wrapped input, or the whole input of a `callAfter` step. */
  args?: { [key: string]: JsonValue };
  retries: number;
  retry_delay_ms: number;
  backoff: Backoff;
  timeout_ms?: number;
}

/** A pipeline compiled for the engine: stored with the run, so no closure holds the run. */
export interface PipelinePlan {
  pipeline_id: string;
  pipeline_type: PipelineType;
  steps: PlanStep[];
  /** Time limit of the whole run. */
  timeout_ms?: number;
  /** At most this many jobs (steps or items) of one run at a time. */
  max_parallel?: number;
  failure_policy: FailurePolicy;
}

/**
 * Checks a dataflow graph: names unique, dependencies known, no cycle. Errors name
 * the steps involved.
 */
export function validateGraph(steps: readonly Pick<PlanStep, 'name' | 'depends_on'>[], pipelineId: string): void {
  const names = new Set<string>();
  for (const step of steps) {
    if (names.has(step.name)) {
      throw new FlowcastError(ErrorCodes.DUPLICATE_STEP, `Pipeline "${pipelineId}" has two steps named "${step.name}"`);
    }
    names.add(step.name);
  }
  for (const step of steps) {
    for (const dep of step.depends_on) {
      if (!names.has(dep)) {
        throw new FlowcastError(
          ErrorCodes.DAG_UNKNOWN_DEPENDENCY,
          `Step "${step.name}" of pipeline "${pipelineId}" depends on unknown step "${dep}"`,
        );
      }
      if (dep === step.name) {
        throw new FlowcastError(ErrorCodes.DAG_CYCLE, `Pipeline "${pipelineId}" has a cycle: ${dep} -> ${dep}`);
      }
    }
  }
  const byName = new Map(steps.map((s) => [s.name, s]));
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (name: string): void => {
    const mark = state.get(name);
    if (mark === 'done') return;
    if (mark === 'visiting') {
      const cycle = [...path.slice(path.indexOf(name)), name];
      throw new FlowcastError(ErrorCodes.DAG_CYCLE, `Pipeline "${pipelineId}" has a cycle: ${cycle.join(' -> ')}`);
    }
    state.set(name, 'visiting');
    path.push(name);
    for (const dep of byName.get(name)?.depends_on ?? []) visit(dep);
    path.pop();
    state.set(name, 'done');
  };
  for (const step of steps) visit(step.name);
}

/** Steps no other step depends on: their results make the result of a dataflow run. */
export function sinkSteps(plan: PipelinePlan): PlanStep[] {
  const used = new Set<string>();
  for (const s of plan.steps) for (const d of s.depends_on) used.add(d);
  return plan.steps.filter((s) => !used.has(s.name));
}

/** The step list carried by `PipelineStartEvent.steps`. */
export function describeSteps(plan: PipelinePlan): StepDescriptor[] {
  return plan.steps.map((s) => ({
    step_name: s.name,
    step_index: s.index,
    kind: s.kind,
    tasks: [...s.tasks],
    depends_on: [...s.depends_on],
  }));
}

/** The graph carried by `PipelineStartEvent.dag`. */
export function describeDag(plan: PipelinePlan): DagDescriptor {
  const edges: [string, string][] = [];
  for (const s of plan.steps) for (const d of s.depends_on) edges.push([d, s.name]);
  return { nodes: plan.steps.map((s) => s.name), edges };
}

/** Delay before attempt `nextAttempt` (2 = first retry). */
export function retryDelay(step: Pick<PlanStep, 'retry_delay_ms' | 'backoff'>, nextAttempt: number): number {
  const n = nextAttempt - 1;
  switch (step.backoff) {
    case 'fixed':
      return step.retry_delay_ms;
    case 'linear':
      return step.retry_delay_ms * n;
    case 'exponential':
      return step.retry_delay_ms * 2 ** (n - 1);
  }
}
