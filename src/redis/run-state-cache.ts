/**
 * What a {@link RedisRunState} keeps of the runs it wrote or read last (the plan, the
 * record and its version), so that its next transition of a run needs no read first, and
 * the handoff that passes the same to the process that writes the run next.
 */
import type { PipelinePlan } from '../pipeline/plan.js';
import type { RunRecord } from '../pipeline/run-state.js';
import { planByDigest, planDigest } from './run-plans.js';

/** What this process keeps of a run: its plan, and the record and version it last wrote or read. */
export interface CachedRun {
  /** The run's plan (shared, frozen: see run-plans.ts). */
  plan: PipelinePlan;
  /** The record's JSON as stored (see run-record-codec.ts). */
  rec: string | null;
  /** The record's version. */
  ver: string | null;
  /**
   * `rec` parsed, when this process wrote it last: the next transition starts from it
   * without parsing again (and takes it: a transition that fails leaves only `rec`). The
   * engine hands user code copies of what it puts in a record (results, chained inputs).
   */
  obj?: RunRecord | null;
}

/**
 * What a process that just wrote a run can hand to the next one that will (the BullMQ
 * broker puts it in the step job it sends): the record and version it wrote, and its
 * plan's digest. The receiver's first transition then needs no read; a handoff gone
 * stale meanwhile is caught by the compare-and-set like any kept record.
 */
export interface RunStateHandoff {
  /** Version. */
  v: string;
  /** Record JSON (without the plan). */
  r: string;
  /** The plan's digest. */
  p: string;
}

/** The runs a run state keeps, most recent last: past `size`, the oldest goes first. */
export class KeptRuns {
  readonly #size: number;
  readonly #runs = new Map<string, CachedRun>();

  /** Keeps at most `size` runs (checked by the caller: a positive integer). */
  constructor(size: number) {
    this.#size = size;
  }

  /** What is kept of the run, if anything. */
  get(runId: string): CachedRun | undefined {
    return this.#runs.get(runId);
  }

  /** Forgets the run. */
  delete(runId: string): void {
    this.#runs.delete(runId);
  }

  /** Forgets every run. */
  clear(): void {
    this.#runs.clear();
  }

  /** Keeps what this process knows of a run, most recent last (the oldest goes first). */
  remember(runId: string, run: CachedRun): CachedRun {
    this.#runs.delete(runId);
    this.#runs.set(runId, run);
    if (this.#runs.size > this.#size) {
      const oldest = this.#runs.keys().next().value;
      if (oldest !== undefined) this.#runs.delete(oldest);
    }
    return run;
  }

  /** What this process last wrote of a run, to hand to the process that writes it next; `null` when it holds nothing. */
  handoff(runId: string): RunStateHandoff | null {
    const run = this.#runs.get(runId);
    const key = run === undefined ? undefined : planDigest(run.plan);
    if (run === undefined || run.rec === null || run.ver === null || key === undefined) return null;
    return { v: run.ver, r: run.rec, p: key };
  }

  /**
   * Takes a handoff of a run this process holds nothing of (else, or when it does not
   * know the plan yet, or when `handoff` is not one, ignores it).
   */
  prime(runId: string, handoff: unknown): void {
    const h = handoff as Partial<RunStateHandoff> | null;
    if (typeof h !== 'object' || h === null || typeof h.v !== 'string' || typeof h.r !== 'string' || typeof h.p !== 'string') return;
    if (this.#runs.has(runId)) return;
    const plan = planByDigest(h.p);
    if (plan !== undefined) this.remember(runId, { plan, rec: h.r, ver: h.v });
  }
}
