/**
 * The message format of external producers (docs/redis.md, "External producers"): one
 * entry of the `<prefix>ingest` stream with flat string fields, checked strictly.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

/** One entry of the ingest stream as the producer wrote it (field → value). */
export type IngestEntry = Record<string, string>;

/** What an ingest entry asks for. */
export interface ParsedIngestEntry {
  runId: string;
  step: string;
  kind: 'log' | 'progress';
  /** The log lines (`log`), else empty. */
  lines: string[];
  /** 0..1 (`progress`), else `null`. */
  progress: number | null;
  /** The text shown with a progress, if any. */
  message: string | null;
  item: number | null;
}

const TYPES: Record<string, 'log' | 'progress'> = {
  log: 'log',
  step_log: 'log',
  StepLogEvent: 'log',
  progress: 'progress',
  step_progress: 'progress',
  StepProgressEvent: 'progress',
};
const MAX_MESSAGE = 64 * 1024;

/** An entry that can never be ingested (it is acknowledged and reported, never retried). */
export class IngestRefused extends InvalidArgumentError {}

/**
 * Checks an ingest entry and turns it into the parts of an event. Exported for producers
 * written in TypeScript that want to validate before writing.
 */
export function parseIngestEntry(entry: IngestEntry): ParsedIngestEntry {
  const runId = entry.run_id;
  if (runId === undefined || !/^[A-Za-z0-9_.:\-/@]{1,200}$/.test(runId)) throw new IngestRefused(`run_id must be 1-200 characters of letters, digits and _ . : - / @, received ${show(runId)}`);
  const step = entry.step ?? entry.step_name;
  if (step === undefined || step.length === 0 || step.length > 200) throw new IngestRefused(`step must be a step name, received ${show(step)}`);
  const kind = TYPES[entry.type ?? ''];
  if (kind === undefined) throw new IngestRefused(`type must be "log" or "progress", received ${show(entry.type)}`);
  const message = entry.message ?? null;
  if (message !== null && message.length > MAX_MESSAGE) throw new IngestRefused(`message is longer than ${MAX_MESSAGE} characters (${message.length})`);
  let item: number | null = null;
  if (entry.item !== undefined) {
    item = Number(entry.item);
    if (!Number.isInteger(item) || item < 0) throw new IngestRefused(`item must be an integer >= 0, received ${show(entry.item)}`);
  }
  if (kind === 'log') {
    if (message === null) throw new IngestRefused('a log entry needs a message');
    return { runId, step, kind, lines: message.replace(/\r?\n$/, '').split(/\r?\n/), progress: null, message: null, item };
  }
  const progress = Number(entry.progress);
  if (entry.progress === undefined || entry.progress.trim() === '' || !Number.isFinite(progress) || progress < 0 || progress > 1) {
    throw new IngestRefused(`progress must be a number from 0 to 1, received ${show(entry.progress)}`);
  }
  return { runId, step, kind, lines: [], progress, message, item };
}
