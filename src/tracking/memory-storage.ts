import { checkKnownKeys, checkNonEmptyString, checkObject, checkPositiveInt } from '../core/validate.js';
import { InvalidArgumentError, toError } from '../core/errors.js';
import { throwIfAborted } from '../core/abort.js';
import { isTerminalEvent, type FlowcastEvent } from '../events/types.js';
import { isEndedStatus, type PipelineStatus } from './models.js';
import { applyEvent } from './reducer.js';
import { checkEventGroup, checkMaintenance, type ListPipelinesQuery, type MaintenanceOptions, type TrackingStorage } from './storage.js';

/** Options of {@link InMemoryPipelineStorage}. */
export interface InMemoryPipelineStorageOptions {
  /**
   * Runs kept. Past it, the run that ended first is evicted; a running run only when
   * every kept run is running.
   * @default 10000
   */
  maxRuns?: number;
}

/**
 * Tracking storage in this process's memory (seed 001 §5.1): fast, bounded, lost on
 * restart, not shared between processes. Queries return copies; {@link applyEvent}
 * updates the stored status in place, without a clone or a promise.
 *
 * @example
 * const tracking = new PipelineTrackingManager().withStorage(new InMemoryPipelineStorage({ maxRuns: 1000 }));
 */
export class InMemoryPipelineStorage implements TrackingStorage {
  /** The bound given at construction. */
  readonly maxRuns: number;
  /** run id → status, in insertion order (the eviction order of running runs). */
  readonly #runs = new Map<string, PipelineStatus>();
  /** Ended run ids, in the order they ended (the eviction order). */
  readonly #ended = new Set<string>();
  /** pipeline id → its run ids. */
  readonly #byPipeline = new Map<string, Set<string>>();

  constructor(options: InMemoryPipelineStorageOptions = {}) {
    const o = checkObject(options, 'InMemoryPipelineStorage options');
    checkKnownKeys(o, ['maxRuns'], 'InMemoryPipelineStorage options');
    this.maxRuns = options.maxRuns === undefined ? 10_000 : checkPositiveInt(options.maxRuns, 'maxRuns');
  }

  /** Number of runs kept. */
  get size(): number {
    return this.#runs.size;
  }

  saveStatus(status: PipelineStatus): Promise<void> {
    if (typeof status !== 'object' || status === null || typeof status.run_id !== 'string') {
      return Promise.reject(new InvalidArgumentError('saveStatus(status): status must be a PipelineStatus'));
    }
    this.#put(structuredClone(status));
    return Promise.resolve();
  }

  getStatus(runId: string): Promise<PipelineStatus | null> {
    const s = this.#runs.get(runId);
    return Promise.resolve(s === undefined ? null : structuredClone(s));
  }

  listPipelines(query: ListPipelinesQuery = {}): Promise<PipelineStatus[]> {
    const { status, pipelineId, since, limit, offset = 0 } = query;
    let candidates: Iterable<string>;
    if (pipelineId !== undefined) candidates = this.#byPipeline.get(pipelineId) ?? [];
    else candidates = this.#runs.keys();
    const sinceMs = since === undefined ? null : since.getTime();
    const matched: PipelineStatus[] = [];
    for (const id of candidates) {
      const s = this.#runs.get(id);
      if (s === undefined) continue;
      if (status !== undefined && s.status !== status) continue;
      if (sinceMs !== null && (s.started_at === null || Date.parse(s.started_at) < sinceMs)) continue;
      matched.push(s);
    }
    // Reversed insertion order first, so that the stable sort puts the later-saved of two equal start times first.
    matched.reverse();
    matched.sort(newestStartedFirst);
    const page = matched.slice(offset, limit === undefined ? undefined : offset + limit);
    return Promise.resolve(page.map((s) => structuredClone(s)));
  }

  /** See {@link TrackingStorage.deletePipeline}. The work is synchronous: `options.signal` is checked before it starts. */
  deletePipeline(id: string, options: MaintenanceOptions = {}): Promise<number> {
    try {
      throwIfAborted(checkMaintenance(options, 'deletePipeline'), 'deletePipeline');
    } catch (error) {
      return Promise.reject(toError(error));
    }
    if (this.#runs.has(id)) {
      this.#remove(id);
      return Promise.resolve(1);
    }
    const runs = this.#byPipeline.get(id);
    if (runs === undefined) return Promise.resolve(0);
    const ids = [...runs];
    for (const runId of ids) this.#remove(runId);
    return Promise.resolve(ids.length);
  }

  /** Applies `event` to the stored status in place (see {@link TrackingStorage.applyEvent}). The result is the stored object: do not change it. */
  applyEvent(event: FlowcastEvent): PipelineStatus | null {
    const current = this.#runs.get(event.run_id) ?? null;
    if (current !== null && event.seq <= current.last_seq) return null;
    const next = applyEvent(current, event);
    if (next === null) return null;
    if (next !== current) {
      this.#put(next);
    } else if (isTerminalEvent(event)) {
      this.#ended.delete(next.run_id);
      this.#ended.add(next.run_id);
    } else if (event.type === 'PipelineResumeEvent') {
      this.#ended.delete(next.run_id);
    }
    return next;
  }

  /**
   * Applies a group of events of one run in order, synchronously (see
   * {@link TrackingStorage.applyEvents}): the status after the last applied one, or
   * `null` when none was. The result is the stored object: do not change it.
   */
  applyEvents(events: FlowcastEvent[]): PipelineStatus | null {
    checkEventGroup(events, 'applyEvents(events)');
    let last: PipelineStatus | null = null;
    for (const event of events) last = this.applyEvent(event) ?? last;
    return last;
  }

  getLatest(pipelineId: string): Promise<PipelineStatus | null> {
    checkNonEmptyString(pipelineId, 'pipelineId');
    let best: PipelineStatus | null = null;
    for (const id of this.#byPipeline.get(pipelineId) ?? []) {
      const s = this.#runs.get(id);
      // `>=`: of equal start times, the later saved wins.
      if (s !== undefined && (best === null || newestStartedFirst(s, best) <= 0)) best = s;
    }
    return Promise.resolve(best === null ? null : structuredClone(best));
  }

  /** See {@link TrackingStorage.cleanupOlderThan}. The work is synchronous: `options.signal` is checked before it starts. */
  cleanupOlderThan(cutoff: Date, options: MaintenanceOptions = {}): Promise<number> {
    try {
      throwIfAborted(checkMaintenance(options, 'cleanupOlderThan'), 'cleanupOlderThan');
    } catch (error) {
      return Promise.reject(toError(error));
    }
    const cut = cutoff.getTime();
    const old: string[] = [];
    for (const id of this.#ended) {
      const s = this.#runs.get(id);
      if (s !== undefined && s.completed_at !== null && Date.parse(s.completed_at) < cut) old.push(id);
    }
    for (const id of old) this.#remove(id);
    return Promise.resolve(old.length);
  }

  /** Removes every run. */
  clear(): void {
    this.#runs.clear();
    this.#ended.clear();
    this.#byPipeline.clear();
  }

  #put(status: PipelineStatus): void {
    const runId = status.run_id;
    const previous = this.#runs.get(runId);
    if (previous !== undefined && previous.pipeline_id !== status.pipeline_id) this.#unindex(previous.pipeline_id, runId);
    this.#runs.set(runId, status);
    let set = this.#byPipeline.get(status.pipeline_id);
    if (set === undefined) {
      set = new Set();
      this.#byPipeline.set(status.pipeline_id, set);
    }
    set.add(runId);
    if (isEndedStatus(status.status)) {
      if (!this.#ended.has(runId)) this.#ended.add(runId);
    } else {
      this.#ended.delete(runId);
    }
    if (previous === undefined) this.#evict();
  }

  #evict(): void {
    while (this.#runs.size > this.maxRuns) {
      const ended = this.#ended.values().next();
      const victim = ended.done === true ? this.#runs.keys().next().value : ended.value;
      if (victim === undefined) return;
      this.#remove(victim);
    }
  }

  #remove(runId: string): void {
    const s = this.#runs.get(runId);
    if (s === undefined) return;
    this.#runs.delete(runId);
    this.#ended.delete(runId);
    this.#unindex(s.pipeline_id, runId);
  }

  #unindex(pipelineId: string, runId: string): void {
    const set = this.#byPipeline.get(pipelineId);
    if (set === undefined) return;
    set.delete(runId);
    if (set.size === 0) this.#byPipeline.delete(pipelineId);
  }
}

/** Sort order of queries: newest `started_at` first, runs that never started last. */
export function newestStartedFirst(a: PipelineStatus, b: PipelineStatus): number {
  if (a.started_at === b.started_at) return 0;
  if (a.started_at === null) return 1;
  if (b.started_at === null) return -1;
  return Date.parse(b.started_at) - Date.parse(a.started_at);
}
