/**
 * Run ids as users type them: the whole id, or any prefix that names one run (such as
 * the 8 characters `flowcast history` prints), looked up through the server's
 * `GET /api/runs?run_id_prefix=`.
 */
import type { PipelineStatus } from '../tracking/models.js';
import { RestCallError, getJson, type RestTarget } from './rest-client.js';

/** Candidates listed in an "ambiguous" message. */
const SHOWN = 10;

/** A whole UUID (the ids flowcast makes): never taken for a prefix. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A prefix that fits several runs. The message lists them (newest started first). */
export class AmbiguousRunIdError extends Error {
  readonly candidates: readonly PipelineStatus[];
  constructor(prefix: string, candidates: readonly PipelineStatus[], more: boolean) {
    const lines = candidates.slice(0, SHOWN).map((r) => `  ${r.run_id}  ${r.pipeline_id}  ${r.status}${r.started_at === null ? '' : `  ${r.started_at}`}`);
    super(`run id prefix "${prefix}" is ambiguous: it fits ${more ? `more than ${SHOWN}` : candidates.length} runs; give more characters:\n${lines.join('\n')}${more ? '\n  …' : ''}`);
    this.name = 'AmbiguousRunIdError';
    this.candidates = candidates;
  }
}

/**
 * The runs whose id starts with `prefix` (at most {@link SHOWN} + 1), newest started
 * first; `null` when the server cannot look runs up (it has no tracking).
 */
export async function runsWithPrefix(target: RestTarget, prefix: string): Promise<PipelineStatus[] | null> {
  try {
    const page = await getJson<{ runs: PipelineStatus[] }>(target, 'api/runs', { run_id_prefix: prefix, limit: SHOWN + 1 });
    return page.runs;
  } catch (error) {
    if (error instanceof RestCallError && error.status === 503) return null;
    throw error;
  }
}

/**
 * The one run `prefix` names: the run with exactly this id, else the only run whose id
 * starts with it (two requests at most). `null` when none does (or the server has no tracking to ask);
 * throws {@link AmbiguousRunIdError} when several do.
 */
export async function resolveRunPrefix(target: RestTarget, prefix: string): Promise<PipelineStatus | null> {
  try {
    return await getJson<PipelineStatus>(target, `api/runs/${encodeURIComponent(prefix)}`);
  } catch (error) {
    if (!(error instanceof RestCallError)) throw error;
    if (error.status === 503) return null;
    if (error.status !== 404 && error.status !== 400) throw error;
  }
  const runs = await runsWithPrefix(target, prefix);
  if (runs === null || runs.length === 0) return null;
  if (runs.length === 1) return runs[0] as PipelineStatus;
  throw new AmbiguousRunIdError(prefix, runs, runs.length > SHOWN);
}
