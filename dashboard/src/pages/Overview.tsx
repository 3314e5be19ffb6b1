/** Runs overview: a live, virtualised table of runs with filters, search, paging and counts per status. */
import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { listRuns } from '../api.js';
import { StatusBadge, Progress, LABELS } from '../components/Status.js';
import { VirtualList } from '../components/Virtual.js';
import { formatDuration, formatTime, liveDuration, shortId } from '../format.js';
import { subscribeQuietly, useMonitor } from '../live.js';
import { Link, paths } from '../router.js';
import { RunsStore } from '../runs-store.js';
import { useNow, useFrameCounter } from '../hooks.js';

const STATUSES = ['RUNNING', 'QUEUED', 'COMPLETED', 'FAILED', 'CANCELLED', 'PENDING'] as const;
const PAGE = 1000;
const LOAD_PAGE = 1000;

export function Overview(): JSX.Element {
  const store = useRef(new RunsStore()).current;
  const [version, bump] = useFrameCounter();
  const [status, setStatus] = useState<string>('ALL');
  const [pipeline, setPipeline] = useState<string>('ALL');
  const [search, setSearch] = useState('');
  const [page, setPage] = useState(0);
  const [nextOffset, setNextOffset] = useState<number | null>(0);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const now = useNow(1000);

  const load = async (offset: number): Promise<void> => {
    try {
      const answer = await listRuns(offset, LOAD_PAGE);
      for (const run of answer.runs) store.put(run);
      for (const run of answer.queued ?? []) store.put(run);
      setNextOffset(answer.next_offset);
      setLoadError(null);
      bump();
    } catch (error) {
      setLoadError((error as Error).message);
    } finally {
      setLoaded(true);
    }
  };
  useEffect(() => {
    void (async () => {
      await load(0);
    })();
  }, []);

  const state = useMonitor(
    (monitor) => {
      monitor.on('snapshot', (s) => {
        store.put(s.status);
        bump();
      });
      monitor.on('*', (event) => {
        store.apply(event);
        bump();
      });
      subscribeQuietly(monitor, '*', (e) => setLoadError(e.message));
    },
    [],
    { lateJoin: 'snapshot', onReconnect: () => void load(0) },
  );

  const all = useMemo(() => store.sorted(), [version]);
  const pipelines = useMemo(() => [...new Set(all.map((r) => r.pipeline_id))].sort(), [all]);
  const counts = useMemo(() => {
    const c: Record<string, number> = {};
    for (const r of all) if (pipeline === 'ALL' || r.pipeline_id === pipeline) c[r.status] = (c[r.status] ?? 0) + 1;
    return c;
  }, [all, pipeline]);
  const needle = search.trim().toLowerCase();
  const filtered = useMemo(
    () =>
      all.filter(
        (r) =>
          (status === 'ALL' || r.status === status) &&
          (pipeline === 'ALL' || r.pipeline_id === pipeline) &&
          (needle === '' || r.run_id.toLowerCase().includes(needle) || r.pipeline_id.toLowerCase().includes(needle) || (r.current_step ?? '').toLowerCase().includes(needle)),
      ),
    [all, status, pipeline, needle],
  );
  const pages = Math.max(1, Math.ceil(filtered.length / PAGE));
  const current = Math.min(page, pages - 1);
  const rows = filtered.slice(current * PAGE, (current + 1) * PAGE);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);

  return (
    <section aria-labelledby="runs-title">
      <div class="page-head">
        <h1 id="runs-title">Runs</h1>
        <span class="muted" data-testid="live-state">{state === 'open' ? 'Live' : state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…'}</span>
      </div>
      <div class="filters" role="group" aria-label="Filter by status">
        <button type="button" class={`chip ${status === 'ALL' ? 'on' : ''}`} aria-pressed={status === 'ALL'} onClick={() => (setStatus('ALL'), setPage(0))}>
          All <span class="count">{total}</span>
        </button>
        {STATUSES.map((s) => (
          <button
            type="button"
            key={s}
            class={`chip s-${s.toLowerCase()} ${status === s ? 'on' : ''}`}
            aria-pressed={status === s}
            data-testid={`count-${s}`}
            onClick={() => (setStatus(s), setPage(0))}
          >
            {LABELS[s]} <span class="count">{counts[s] ?? 0}</span>
          </button>
        ))}
      </div>
      <div class="toolbar">
        <label>
          Pipeline{' '}
          <select value={pipeline} onChange={(e) => (setPipeline((e.target as HTMLSelectElement).value), setPage(0))} data-testid="pipeline-filter">
            <option value="ALL">All pipelines</option>
            {pipelines.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <label class="grow">
          <span class="sr-only">Search</span>
          <input
            type="search"
            placeholder="Search run id, pipeline or step"
            value={search}
            onInput={(e) => (setSearch((e.target as HTMLInputElement).value), setPage(0))}
            data-testid="search"
          />
        </label>
        <span class="muted" data-testid="shown">
          {filtered.length} of {all.length} runs
        </span>
      </div>
      {loadError !== null && <p class="error" role="alert">Could not load runs: {loadError}</p>}
      <div class="table" role="table" aria-label="Runs" aria-rowcount={rows.length + 1} data-testid="runs-table">
        <div class="tr th" role="row">
          <span role="columnheader">Pipeline</span>
          <span role="columnheader">Run</span>
          <span role="columnheader">Status</span>
          <span role="columnheader">Started</span>
          <span role="columnheader">Duration</span>
          <span role="columnheader">Current step</span>
          <span role="columnheader">Progress</span>
        </div>
        {rows.length === 0 ? (
          <p class="empty">{loaded ? 'No runs match.' : 'Loading…'}</p>
        ) : (
          <VirtualList
            count={rows.length}
            rowHeight={38}
            height={`min(${rows.length * 38 + 2}px, calc(100vh - 330px))`}
            role="rowgroup"
            renderRow={(i) => {
              const r = rows[i];
              if (r === undefined) return null;
              return (
                <div class="tr" role="row" data-run-id={r.run_id} data-status={r.status}>
                  <span role="cell" class="ellipsis">{r.pipeline_id}</span>
                  <span role="cell" class="mono">
                    <Link href={paths.run(r.run_id)} title={r.run_id}>
                      {shortId(r.run_id)}
                    </Link>
                  </span>
                  <span role="cell">
                    <StatusBadge status={r.status} />
                  </span>
                  <span role="cell">{formatTime(r.started_at)}</span>
                  <span role="cell">{formatDuration(liveDuration(r.started_at, r.duration_ms, Math.max(now, Date.now())))}</span>
                  <span role="cell" class="ellipsis">{r.current_step ?? '—'}</span>
                  <span role="cell">
                    <Progress value={r.progress} label={`Progress of run ${shortId(r.run_id)}`} />
                  </span>
                </div>
              );
            }}
          />
        )}
      </div>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={current === 0} onClick={() => setPage(current - 1)}>
          ← Newer
        </button>
        <span>
          Page {current + 1} of {pages}
        </span>
        <button type="button" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>
          Older →
        </button>
        {nextOffset !== null && nextOffset > 0 && (
          <button type="button" onClick={() => void load(nextOffset)}>
            Load older runs from the server
          </button>
        )}
      </nav>
    </section>
  );
}
