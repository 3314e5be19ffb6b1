import { FlowcastError, ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { Broker } from './broker.js';
import type { Task } from '../core/task.js';
import { checkKnownKeys, checkNonEmptyString, checkObject, show } from '../core/validate.js';
import { BasePipeline, PIPELINE_OPTION_KEYS, STEP_OPTION_KEYS, type CallOptions, type PipelineOptions, type StepOptions } from './base.js';
import type { PipelinePlan, PlanStep } from './plan.js';

const CALL_KEYS = [...STEP_OPTION_KEYS, 'paramName', 'args'] as const;

/**
 * A sequential pipeline (seed 000 §2, seed 001 §1): each step receives the previous
 * step's result. Steps are broker jobs; the run continues wherever the broker runs them.
 *
 * @example
 * const pipeline = new Pipeline(broker, { id: 'demo_workflow' })
 *   .callNext(fetchData)
 *   .map(processItem, { retries: 2 })
 *   .filter(isValid)
 *   .callNext(save, { paramName: 'rows' });
 * const run = await pipeline.kiq({ url: 'https://example.com' });
 * const result = await run.waitResult();
 */
export class Pipeline<I extends JsonValue = JsonValue, O extends JsonValue = JsonValue> extends BasePipeline<I, O> {
  readonly #steps: PlanStep[] = [];

  constructor(broker: Broker, options: PipelineOptions = {}) {
    checkKnownKeys(checkObject(options, 'Pipeline options'), PIPELINE_OPTION_KEYS, 'Pipeline options');
    super(broker, options);
  }

  /** Step names in order. */
  get stepNames(): string[] {
    return this.#steps.map((s) => s.name);
  }

  /** Runs `task` on the previous step's result (the run input for the first step). */
  callNext<NO extends JsonValue>(task: Task<never, NO> | Task<JsonValue, NO>, options: CallOptions = {}): Pipeline<I, NO> {
    return this.#add('call', [task], options, 'callNext') as unknown as Pipeline<I, NO>;
  }

  /** Runs `task` after the previous step, ignoring its result: the input is `args` (or `null`). */
  callAfter<NO extends JsonValue>(
    task: Task<never, NO> | Task<JsonValue, NO>,
    options: StepOptions & { args?: { [key: string]: JsonValue } } = {},
  ): Pipeline<I, NO> {
    return this.#add('after', [task], options, 'callAfter') as unknown as Pipeline<I, NO>;
  }

  /** Runs `task` on each element of the previous result (an array), in parallel; the result is the array of results. */
  map<NO extends JsonValue>(task: Task<never, NO> | Task<JsonValue, NO>, options: CallOptions = {}): Pipeline<I, NO[]> {
    return this.#add('map', [task], options, 'map') as unknown as Pipeline<I, NO[]>;
  }

  /** Keeps the elements of the previous result (an array) for which `task` returns a truthy value. */
  filter(task: Task<never, JsonValue> | Task, options: CallOptions = {}): Pipeline<I, O> {
    return this.#add('filter', [task], options, 'filter');
  }

  /** Runs several tasks in parallel on the previous result; the result is the array of their results, in order. */
  group(tasks: (Task<never, JsonValue> | Task)[], options: CallOptions = {}): Pipeline<I, JsonValue[]> {
    if (!Array.isArray(tasks) || tasks.length === 0) {
      throw new InvalidArgumentError(`group(tasks): tasks must be a non-empty array of tasks, received ${show(tasks)}`);
    }
    return this.#add('group', tasks, options, 'group') as unknown as Pipeline<I, JsonValue[]>;
  }

  #add(kind: PlanStep['kind'], tasks: (Task<never, JsonValue> | Task)[], options: CallOptions, method: string): this {
    checkKnownKeys(checkObject(options, `${method}() options`), CALL_KEYS, `${method}() options`);
    const names = tasks.map((t) => this.checkTask(t, `${method}()`));
    let name: string;
    if (options.name !== undefined) {
      name = checkNonEmptyString(options.name, `${method}() options: name`);
      if (this.#steps.some((s) => s.name === name)) {
        throw new FlowcastError(ErrorCodes.DUPLICATE_STEP, `Pipeline "${this.pipelineId}" already has a step named "${name}"`);
      }
    } else {
      const stem = kind === 'group' ? names.join('+') : (names[0] as string);
      name = stem;
      for (let n = 2; this.#steps.some((s) => s.name === name); n++) name = `${stem}_${n}`;
    }
    const prev = this.#steps[this.#steps.length - 1];
    this.#steps.push(this.planStep(name, this.#steps.length, kind, tasks, options, prev === undefined ? [] : [prev.name]));
    this.invalidatePlan();
    return this;
  }

  toPlan(): PipelinePlan {
    return {
      ...this.planBase(),
      pipeline_type: 'sequential',
      steps: this.#steps.map((s) => structuredClone(s)),
      failure_policy: 'fail_fast',
    };
  }
}
