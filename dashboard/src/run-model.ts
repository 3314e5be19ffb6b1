/**
 * What the run detail page builds from a run's events (replayed from seq 1, then live):
 * the status (the tracking reducer), every log line, and every attempt of every step
 * for the timeline.
 */
import { applyEvent } from '../../src/tracking/reducer.js';
import type { FlowcastEvent } from '../../src/events/types.js';
import type { PipelineStatus } from '../../src/tracking/models.js';

export interface LogLine {
  seq: number;
  at: string;
  step: string;
  attempt: number;
  text: string;
}

export interface Attempt {
  step: string;
  attempt: number;
  start: number;
  end: number | null;
  outcome: 'running' | 'completed' | 'failed' | 'retried' | 'cancelled';
  error: string | null;
}

export class RunModel {
  status: PipelineStatus | null = null;
  readonly lines: LogLine[] = [];
  readonly attempts: Attempt[] = [];
  lastSeq = 0;
  version = 0;

  apply(e: FlowcastEvent): void {
    if (e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    this.status = applyEvent(this.status, e) ?? this.status;
    const at = Date.parse(e.timestamp);
    switch (e.type) {
      case 'StepLogEvent':
        for (const text of e.lines) this.lines.push({ seq: e.seq, at: e.timestamp, step: e.step_name, attempt: e.attempt, text });
        break;
      case 'StepStartEvent':
        this.attempts.push({ step: e.step_name, attempt: e.attempt, start: at, end: null, outcome: 'running', error: null });
        break;
      case 'StepCompleteEvent':
        this.#close(e.step_name, at, 'completed', null);
        break;
      case 'StepErrorEvent':
        this.#close(e.step_name, at, 'failed', e.error);
        break;
      case 'StepRetryEvent':
        this.#close(e.step_name, at, 'retried', e.error);
        break;
      case 'PipelineCancelledEvent':
      case 'PipelineErrorEvent':
      case 'PipelineCompleteEvent':
        for (const a of this.attempts) {
          if (a.end === null) {
            a.end = at;
            a.outcome = e.type === 'PipelineCancelledEvent' ? 'cancelled' : e.type === 'PipelineErrorEvent' ? 'failed' : 'completed';
          }
        }
        break;
      default:
    }
    this.version++;
  }

  /** Ends the open attempts of a step (a map step has one per item: all end together here). */
  #close(step: string, at: number, outcome: Attempt['outcome'], error: string | null): void {
    for (let i = this.attempts.length - 1; i >= 0; i--) {
      const a = this.attempts[i] as Attempt;
      if (a.step === step && a.end === null) {
        a.end = at;
        a.outcome = outcome;
        a.error = error;
        return;
      }
    }
  }
}
