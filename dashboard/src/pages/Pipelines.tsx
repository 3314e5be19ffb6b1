/**
 * Pipelines: the pipelines this server can start, each with its concurrency policy, its
 * latest run and a Start action (a form built from its input schema). Start is disabled,
 * with the reason and a link to the run in the way, while the policy refuses a start; a
 * policy that queues keeps it enabled and says the start will queue behind that run.
 *
 * The page learns that a start is refused when it loads and when the server refuses one
 * (409); it learns live that the refusal is over when a run of the pipeline ends (its
 * terminal event over the WebSocket), and then reloads the pipeline.
 */
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { listPipelines, type PipelineInfo } from '../api.js';
import { StartForm } from '../components/StartForm.js';
import { StatusBadge } from '../components/Status.js';
import { formatTime, shortId } from '../format.js';
import { subscribeQuietly, useMonitor } from '../live.js';
import { Link, paths } from '../router.js';

const ENDS = ['PipelineCompleteEvent', 'PipelineErrorEvent', 'PipelineCancelledEvent'] as const;

function policyText(p: PipelineInfo): string {
  const c = p.concurrency;
  if (c === null) return 'No concurrency limit';
  const runs = c.limit === 1 ? 'One run at a time' : `At most ${c.limit} runs at a time`;
  const keyed = c.key === 'input' ? `${runs} per key (from the input)` : runs;
  return c.on_limit === 'queue' ? `${keyed}; more starts wait their turn` : keyed;
}

function PipelineCard({ p, open, onToggle, onRefused, single }: { p: PipelineInfo; open: boolean; onToggle: () => void; onRefused: () => void; single: boolean }): JSX.Element {
  const blocked = !p.can_start
    ? 'You may not start runs of this pipeline: your token has no "start" right on it.'
    : p.start_blocked_reason !== undefined
      ? p.start_blocked_reason
      : null;
  const titleId = `pipeline-${p.pipeline_id}-title`;
  return (
    <article class="card pipeline" aria-labelledby={titleId} data-testid="pipeline" data-pipeline-id={p.pipeline_id} data-blocked={blocked === null ? 'false' : 'true'}>
      <div class="pipeline-head">
        <div class="grow">
          <h2 id={titleId} class="mono">
            {single ? p.pipeline_id : <Link href={paths.pipeline(p.pipeline_id)}>{p.pipeline_id}</Link>}
          </h2>
          {p.description !== null && <p class="pipeline-desc">{p.description}</p>}
          <p class="muted small pipeline-meta">
            <span data-testid="policy">{policyText(p)}</span>
            {' · '}
            {p.latest_run === null ? (
              'no run yet'
            ) : (
              <span>
                latest run <Link href={paths.run(p.latest_run.run_id)}>{shortId(p.latest_run.run_id)}</Link> <StatusBadge status={p.latest_run.status} />{' '}
                {formatTime(p.latest_run.started_at)}
              </span>
            )}
          </p>
        </div>
        <button type="button" class="primary" aria-expanded={open} disabled={blocked !== null && !open} onClick={onToggle} data-testid="start-toggle">
          {open ? 'Close' : 'Start…'}
        </button>
      </div>
      {blocked !== null && (
        <p class="blocked" role="status" data-testid="start-blocked">
          {blocked}
          {p.can_start && p.start_blocked_by !== undefined && (
            <>
              {' '}
              <Link href={paths.run(p.start_blocked_by)}>Open run {shortId(p.start_blocked_by)}</Link>
            </>
          )}
        </p>
      )}
      {blocked === null && p.start_queues_behind !== undefined && (
        <p class="muted small" role="status" data-testid="start-queues">
          A start now will queue behind run <Link href={paths.run(p.start_queues_behind)}>{shortId(p.start_queues_behind)}</Link>: it starts when a slot frees.
        </p>
      )}
      {open && <StartForm pipeline={p} blocked={blocked} onRefused={onRefused} />}
    </article>
  );
}

/** Listens (WebSocket) for the end of any run of these pipelines: a refused start may be possible again. */
function RunEnds({ ids, onEnd }: { ids: string[]; onEnd: () => void }): null {
  const latest = useRef(onEnd);
  latest.current = onEnd;
  useMonitor(
    (monitor) => {
      monitor.on('*', (event) => {
        if ((ENDS as readonly string[]).includes(event.type)) latest.current();
      });
      for (const id of ids) subscribeQuietly(monitor, { pipelineId: id });
    },
    [],
    { eventTypes: [...ENDS], onReconnect: () => latest.current() },
  );
  return null;
}

/** The Pipelines page; with `only`, one pipeline with its form open (`/dashboard/pipelines/{id}`). */
export function Pipelines({ only }: { only?: string }): JSX.Element {
  const [pipelines, setPipelines] = useState<PipelineInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [openId, setOpenId] = useState<string | null>(only ?? null);
  const loading = useRef<Promise<void> | null>(null);

  const load = (): Promise<void> =>
    (loading.current ??= listPipelines()
      .then(
        (answer) => {
          setPipelines(answer.pipelines);
          setError(null);
        },
        (e: Error) => setError(e.message),
      )
      .finally(() => (loading.current = null)));
  useEffect(() => void load(), []);

  const ids = (pipelines ?? []).map((p) => p.pipeline_id).join('\n');
  const shown = pipelines === null ? [] : only === undefined ? pipelines : pipelines.filter((p) => p.pipeline_id === only);
  return (
    <section aria-labelledby="pipelines-title">
      {only !== undefined && (
        <p>
          <Link href={paths.pipelines}>← Pipelines</Link>
        </p>
      )}
      <div class="page-head">
        <h1 id="pipelines-title">{only ?? 'Pipelines'}</h1>
      </div>
      {only === undefined && <p class="muted">The pipelines this server can start. Start one with its input; its run opens live.</p>}
      {error !== null && (
        <p class="error" role="alert">
          Could not load the pipelines: {error}
        </p>
      )}
      {pipelines === null && error === null && <p class="muted">Loading…</p>}
      {ids !== '' && <RunEnds key={ids} ids={ids.split('\n')} onEnd={() => void load()} />}
      {pipelines !== null && shown.length === 0 && (
        <p class="muted" data-testid="no-pipelines">
          {only === undefined ? 'This server was given no pipeline to start (getWebSocketServer({ pipelines })), or none you may read.' : `No pipeline "${only}" on this server (or it is not yours to read).`}
        </p>
      )}
      {shown.map((p) => (
        <PipelineCard
          key={p.pipeline_id}
          p={p}
          single={only !== undefined}
          open={openId === p.pipeline_id}
          onToggle={() => setOpenId((id) => (id === p.pipeline_id ? null : p.pipeline_id))}
          onRefused={() => void load()}
        />
      ))}
    </section>
  );
}
