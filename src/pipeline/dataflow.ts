import { FlowcastError, ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker } from './broker.js';
import type { Task } from '../core/task.js';
import { checkKnownKeys, checkNonEmptyString, checkObject, checkOneOf, show } from '../core/validate.js';
import { BasePipeline, PIPELINE_OPTION_KEYS, STEP_OPTION_KEYS, type CallOptions, type PipelineOptions } from './base.js';
import { validateGraph, type FailurePolicy, type PipelinePlan, type PlanStep } from './plan.js';

/** Options of one dataflow step. */
export interface DataflowStepOptions extends Omit<CallOptions, 'name'> {
  /** Steps whose results this step needs. None: the step receives the run input. */
  dependsOn?: string[];
}

/** A whole graph at once: step name → task and options. */
export type DataflowGraph = Record<string, { task: Task<never, JsonValue> | Task } & DataflowStepOptions>;

/** Options of {@link DataflowPipeline}. */
export interface DataflowPipelineOptions extends PipelineOptions {
  /**
   * `"fail_fast"` ends the run at the first step that fails for good; `"continue"` skips
   * only the failed step's dependents (each gets a `StepSkipEvent`) and lets every other
   * branch finish, then ends the run FAILED.
   * @default "fail_fast"
   */
  failurePolicy?: FailurePolicy;
  /** The whole graph, validated at construction (cycles, unknown dependencies). */
  steps?: DataflowGraph;
}

const STEP_KEYS = [...STEP_OPTION_KEYS.filter((k) => k !== 'name'), 'paramName', 'args', 'dependsOn'] as const;

/**
 * A dataflow pipeline: steps name their dependencies, and each starts as soon as all of
 * them completed (a ready queue, never waves), up to `maxParallel` at a time. A step
 * without dependencies receives the run input; a step with dependencies receives an
 * object `{ [dependency]: result }`. The run's result is the result of its only sink
 * step, or `{ [sink]: result }` when there are several.
 *
 * @example
 * const etl = new DataflowPipeline(broker, { id: 'etl', maxParallel: 4 })
 *   .step('users', fetchUsers)
 *   .step('orders', fetchOrders)
 *   .step('report', buildReport, { dependsOn: ['users', 'orders'] });
 */
export class DataflowPipeline<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue> extends BasePipeline<I, O> {
  readonly #steps: PlanStep[] = [];
  readonly failurePolicy: FailurePolicy;

  constructor(broker: Broker, options: DataflowPipelineOptions = {}) {
    checkKnownKeys(
      checkObject(options, 'DataflowPipeline options'),
      [...PIPELINE_OPTION_KEYS, 'failurePolicy', 'steps'],
      'DataflowPipeline options',
    );
    super(broker, options);
    this.failurePolicy = checkOneOf(options.failurePolicy ?? 'fail_fast', ['fail_fast', 'continue'] as const, 'failurePolicy');
    if (options.steps !== undefined) {
      const graph = checkObject(options.steps, 'steps') as DataflowGraph;
      const drafts = Object.entries(graph).map(([name, spec], index) => {
        const { task, ...rest } = checkObject(spec, `steps.${name}`) as unknown as DataflowGraph[string];
        return this.#build(name, index, task, rest);
      });
      validateGraph(drafts, this.pipelineId);
      this.#steps.push(...drafts);
    }
  }

  /** Step names in definition order. */
  get stepNames(): string[] {
    return this.#steps.map((s) => s.name);
  }

  /**
   * Adds a step. Its dependencies must already be defined, so a graph built step by
   * step can have no cycle; pass `steps` to the constructor for any order.
   */
  step(name: string, task: Task<never, JsonValue> | Task, options: DataflowStepOptions = {}): this {
    checkNonEmptyString(name, 'step name');
    if (this.#steps.some((s) => s.name === name)) {
      throw new FlowcastError(ErrorCodes.DUPLICATE_STEP, `Pipeline "${this.pipelineId}" already has a step named "${name}"`);
    }
    const step = this.#build(name, this.#steps.length, task, options);
    for (const dep of step.depends_on) {
      if (!this.#steps.some((s) => s.name === dep)) {
        throw new FlowcastError(
          ErrorCodes.DAG_UNKNOWN_DEPENDENCY,
          `Step "${name}" of pipeline "${this.pipelineId}" depends on unknown step "${dep}" (define "${dep}" first)`,
        );
      }
    }
    this.#steps.push(step);
    this.invalidatePlan();
    return this;
  }

  #build(name: string, index: number, task: Task<never, JsonValue> | Task, options: DataflowStepOptions): PlanStep {
    checkKnownKeys(checkObject(options, `step "${name}" options`), STEP_KEYS, `step "${name}" options`);
    this.checkTask(task, `step "${name}"`);
    const deps = options.dependsOn ?? [];
    if (!Array.isArray(deps) || deps.some((d) => typeof d !== 'string' || d.length === 0)) {
      throw new InvalidArgumentError(`step "${name}": dependsOn must be an array of step names, received ${show(deps)}`);
    }
    if (new Set(deps).size !== deps.length) {
      throw new InvalidArgumentError(`step "${name}": dependsOn lists a step twice: ${deps.join(', ')}`);
    }
    const { dependsOn: _deps, ...rest } = options;
    return this.planStep(name, index, 'call', [task], rest, [...deps]);
  }

  toPlan(): PipelinePlan {
    const steps = this.#steps.map((s) => structuredClone(s));
    validateGraph(steps, this.pipelineId);
    return { ...this.planBase(), pipeline_type: 'dataflow', steps, failure_policy: this.failurePolicy };
  }
}
