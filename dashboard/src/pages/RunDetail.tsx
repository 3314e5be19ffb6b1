/**
 * Run detail: status, progress, the steps' timeline, the DAG of a dataflow run, the live
 * log tail (the whole backlog, replayed from seq 1 when the page opens or reloads, then
 * live), input and result or error, and Cancel / Retry / Resume for those allowed.
 * Retry starts the pipeline over as a new run; Resume continues a FAILED or CANCELLED
 * run from the step that did not finish (the same run, its log goes on).
 */
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { cancelRun, getActions, getRun, resumeRun, retryRun, type RunActions } from '../api.js';
import { Dag } from '../components/Dag.js';
import { Gantt } from '../components/Gantt.js';
import { Progress, StatusBadge } from '../components/Status.js';
import { VirtualList } from '../components/Virtual.js';
import { formatDuration, formatTime, liveDuration } from '../format.js';
import { useFrameCounter, useNow } from '../hooks.js';
import { subscribeQuietly, useMonitor } from '../live.js';
import { Link, navigate, paths } from '../router.js';
import { RunModel } from '../run-model.js';
import { isEndedStatus, type PipelineStatus } from '../../../src/tracking/models.js';

const ACTION_NAMES = { cancel: 'Cancel', retry: 'Retry', resume: 'Resume' } as const;

function Json({ value }: { value: unknown }): JSX.Element {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  return <pre class="json">{text.length > 20_000 ? `${text.slice(0, 20_000)}\n…` : text}</pre>;
}

export function RunDetail({ runId }: { runId: string }): JSX.Element {
  const model = useRef(new RunModel());
  const [, bump] = useFrameCounter();
  const [rest, setRest] = useState<PipelineStatus | null>(null);
  const [notFound, setNotFound] = useState(false);
  const [trimmed, setTrimmed] = useState<number | null>(null);
  const [actions, setActions] = useState<RunActions | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const now = useNow(500);

  useEffect(() => {
    model.current = new RunModel();
    setRest(null);
    setNotFound(false);
    setActions(null);
    setMessage(null);
    getRun(runId).then(
      (s) => setRest(s),
      (e: { status?: number }) => {
        if (e.status === 404 || e.status === 403) setNotFound(true);
      },
    );
    getActions(runId).then(setActions, () => setActions(null));
  }, [runId]);

  const state = useMonitor(
    (monitor) => {
      monitor.on('*', (event) => {
        if (event.run_id !== runId) return;
        model.current.apply(event);
        bump();
      });
      monitor.on('replay_incomplete', (m) => {
        if (m.run_id === runId) setTrimmed(m.first_seq);
      });
      subscribeQuietly(monitor, { runId, since: 0 }, (e) => setMessage(e.message));
    },
    [runId],
    {},
  );

  const m = model.current;
  const status = m.status ?? rest;
  const ended = status !== null && isEndedStatus(status.status);

  const resumable = ended && (status.status === 'FAILED' || status.status === 'CANCELLED') && (actions?.resume ?? actions?.retry) === true;

  const act = async (what: 'cancel' | 'retry' | 'resume'): Promise<void> => {
    setBusy(what);
    setMessage(null);
    try {
      if (what === 'cancel') {
        await cancelRun(runId);
        setMessage('Cancel requested.');
      } else if (what === 'resume') {
        const resumed = await resumeRun(runId);
        const kept = Array.isArray(resumed.kept_steps) && resumed.kept_steps.length > 0 ? ` Kept: ${resumed.kept_steps.join(', ')}.` : '';
        const attempt = typeof resumed.attempt === 'number' ? ` (attempt ${resumed.attempt})` : '';
        setMessage(`Resumed${attempt}: the run goes on from the step that did not finish.${kept}`);
        // The events that follow (over the open subscription) update the page; REST catches up the rest.
        getRun(runId).then(setRest, () => undefined);
      } else {
        const next = await retryRun(runId);
        navigate(paths.run(next.run_id));
      }
    } catch (error) {
      setMessage(`${ACTION_NAMES[what]} failed: ${(error as Error).message}`);
    } finally {
      setBusy(null);
    }
  };

  if (status === null) {
    return (
      <section>
        <p>
          <Link href={paths.overview}>← Runs</Link>
        </p>
        <h1 class="mono">Run {runId}</h1>
        <p class="muted">{notFound ? 'No such run (or it is not yours to read).' : state === 'open' ? 'Loading…' : 'Connecting…'}</p>
      </section>
    );
  }

  return (
    <section aria-labelledby="run-title" data-testid="run-detail" data-status={status.status}>
      <p>
        <Link href={paths.overview}>← Runs</Link>
      </p>
      <div class="page-head">
        <h1 id="run-title">
          {status.pipeline_id} <span class="mono muted small">{runId}</span>
        </h1>
        <StatusBadge status={status.status} />
        <span class="grow" />
        {actions?.cancel === true && !ended && (
          <button type="button" class="danger" disabled={busy !== null} onClick={() => void act('cancel')} data-testid="cancel">
            {busy === 'cancel' ? 'Cancelling…' : 'Cancel run'}
          </button>
        )}
        {actions?.retry === true && ended && (
          <button type="button" disabled={busy !== null} onClick={() => void act('retry')} data-testid="retry">
            {busy === 'retry' ? 'Starting…' : 'Retry'}
          </button>
        )}
        {resumable && (
          <button type="button" disabled={busy !== null} onClick={() => void act('resume')} data-testid="resume" title="Continue from the step that did not finish, keeping the results of the steps that did">
            {busy === 'resume' ? 'Resuming…' : 'Resume'}
          </button>
        )}
      </div>
      {message !== null && (
        <p role="status" data-testid="action-message" class={message.includes(' failed: ') ? 'error' : undefined}>
          {message}
        </p>
      )}
      <dl class="facts">
        <div>
          <dt>Type</dt>
          <dd>{status.pipeline_type}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTime(status.started_at)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{formatDuration(liveDuration(status.started_at, status.duration_ms, Math.max(now, Date.now())))}</dd>
        </div>
        <div>
          <dt>Current step</dt>
          <dd>{status.current_step ?? '—'}</dd>
        </div>
        <div>
          <dt>Progress</dt>
          <dd>
            <Progress value={status.progress} label="Run progress" />
          </dd>
        </div>
        <div>
          <dt>Events</dt>
          <dd data-testid="last-seq">{m.lastSeq}</dd>
        </div>
      </dl>

      <h2>Steps</h2>
      <Gantt status={status} attempts={m.attempts} now={now} />
      <div class="table-scroll">
        <table class="steps">
          <caption class="sr-only">Steps</caption>
          <thead>
            <tr>
              <th scope="col">Step</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">Progress</th>
              <th scope="col">Message or error</th>
            </tr>
          </thead>
          <tbody>
            {status.steps.map((s) => (
              <tr key={s.step_name}>
                <td>{s.step_name}</td>
                <td>
                  <StatusBadge status={s.status} />
                </td>
                <td>{s.attempts}</td>
                <td>
                  <Progress value={s.progress} label={`Progress of ${s.step_name}`} />
                </td>
                <td class="ellipsis">{s.error ?? s.message ?? s.skip_reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      {status.dag !== undefined && (
        <>
          <h2>Graph</h2>
          <div class="dag-box">
            <Dag dag={status.dag} steps={status.steps} />
          </div>
        </>
      )}

      <h2>
        Log <span class="muted small" data-testid="log-count">{m.lines.length} lines</span>
      </h2>
      {trimmed !== null && <p class="muted">The server no longer holds this run's events before seq {trimmed}: the log starts there.</p>}
      {m.lines.length === 0 ? (
        <p class="muted">No log lines{ended ? '.' : ' yet.'}</p>
      ) : (
        <VirtualList
          class="log"
          count={m.lines.length}
          rowHeight={20}
          height={`min(${m.lines.length * 20 + 4}px, 420px, 60vh)`}
          follow
          role="log"
          label="Log lines"
          renderRow={(i) => {
            const l = m.lines[i];
            if (l === undefined) return null;
            return (
              <div class="log-line" data-line={i}>
                <span class="log-no">{i + 1}</span>
                <span class="log-step">{l.step}</span>
                <span class="log-text">{l.text}</span>
              </div>
            );
          }}
        />
      )}

      <div class="io">
        <div>
          <h2>Input</h2>
          <Json value={status.input} />
        </div>
        <div>
          {status.status === 'FAILED' || status.status === 'CANCELLED' ? (
            <>
              <h2>{status.status === 'FAILED' ? 'Error' : 'Cancelled'}</h2>
              <pre class="json error-text" data-testid="run-error">{status.error ?? ''}</pre>
            </>
          ) : (
            <>
              <h2>Result</h2>
              {status.status === 'COMPLETED' ? <Json value={status.result} /> : <p class="muted">Not finished yet.</p>}
            </>
          )}
        </div>
      </div>
    </section>
  );
}
