/** Engine status (seed 002): workers, queues, connected clients, events per second, server instances — pushed every ~2 s. */
import type { JSX } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { ChartConfiguration } from 'chart.js';
import { getEngine, type EngineStatus } from '../api.js';
import { ChartCanvas } from '../components/Chart.js';
import { formatTime } from '../format.js';
import { subscribeQuietly, useMonitor } from '../live.js';

const HISTORY = 60;

export function Engine(): JSX.Element {
  const [status, setStatus] = useState<EngineStatus | null>(null);
  const [rates, setRates] = useState<{ at: string; eps: number }[]>([]);
  const [error, setError] = useState<string | null>(null);
  const take = (s: EngineStatus): void => {
    setStatus(s);
    setRates((r) => [...r, { at: s.at, eps: s.server.events_per_second }].slice(-HISTORY));
  };
  useEffect(() => {
    getEngine().then(take, (e: Error) => setError(e.message));
  }, []);
  useMonitor(
    (monitor) => {
      monitor.on('engine_status', (m) => {
        const { type: _type, ...rest } = m;
        take(rest);
      });
      subscribeQuietly(monitor, { channel: 'engine' }, (e) => setError(e.message));
    },
    [],
  );
  const config = useMemo<ChartConfiguration>(
    () => ({
      type: 'line',
      data: {
        // Seconds before the latest sample on a linear axis: one tick per step of the
        // scale, never the same clock time printed twice.
        datasets: [
          {
            label: 'events / s',
            data: rates.map((r) => ({ x: (Date.parse(r.at) - Date.parse(rates.at(-1)?.at ?? r.at)) / 1000, y: r.eps })),
            borderColor: '#2b6cd4',
            backgroundColor: 'rgba(43,108,212,0.15)',
            fill: true,
            pointRadius: 0,
            tension: 0.25,
          },
        ],
      },
      options: {
        scales: {
          x: { type: 'linear', title: { display: true, text: `seconds before ${rates.length === 0 ? 'now' : formatTime(rates.at(-1)?.at ?? null)}` }, ticks: { precision: 0 } },
          y: { beginAtZero: true, title: { display: true, text: 'events / s' } },
        },
        plugins: { legend: { display: false } },
      },
    }),
    [rates],
  );
  if (status === null) {
    return (
      <section>
        <h1>Engine</h1>
        <p class="muted">{error ?? 'Loading…'}</p>
      </section>
    );
  }
  const busy = status.workers.filter((w) => w.state === 'busy').length;
  return (
    <section aria-labelledby="engine-title" data-testid="engine">
      <div class="page-head">
        <h1 id="engine-title">Engine</h1>
        <span class="muted">
          broker <strong>{status.broker}</strong> · updated {formatTime(status.at)}
        </span>
      </div>
      <div class="cards">
        <div class="card stat">
          <span class="stat-label">Workers</span>
          <span class="stat-value" data-testid="workers-count">{status.workers.length}</span>
          <span class="muted">
            {busy} busy, {status.workers.length - busy} idle
          </span>
        </div>
        <div class="card stat">
          <span class="stat-label">Jobs waiting</span>
          <span class="stat-value">{status.queues.reduce((n, q) => n + q.waiting, 0)}</span>
          <span class="muted">{status.queues.reduce((n, q) => n + q.active, 0)} active</span>
        </div>
        <div class="card stat">
          <span class="stat-label">Connected clients</span>
          <span class="stat-value" data-testid="clients">{status.server.clients}</span>
          <span class="muted">on this server</span>
        </div>
        <div class="card stat">
          <span class="stat-label">Events per second</span>
          <span class="stat-value" data-testid="eps">{status.server.events_per_second}</span>
          <span class="muted">last 10 s</span>
        </div>
        <div class="card stat">
          <span class="stat-label">Server instances</span>
          <span class="stat-value">{status.instances.length}</span>
          <span class="muted">sharing events</span>
        </div>
      </div>
      <div class="card">
        <h2>Event rate</h2>
        <ChartCanvas config={config} label="Events per second over the last two minutes" height={160} />
      </div>
      <div class="card">
        <h2>Workers</h2>
        <table data-testid="workers">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Host</th>
              <th scope="col">State</th>
              <th scope="col">Active jobs</th>
              <th scope="col">Processed</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {status.workers.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  No worker reports to this broker.
                </td>
              </tr>
            )}
            {status.workers.map((w) => (
              <tr key={w.id}>
                <td class="mono">{w.id}</td>
                <td>
                  {w.host} <span class="muted">pid {w.pid}</span>
                </td>
                <td>
                  <span class={`badge ${w.state === 'busy' ? 's-running' : 's-idle'}`}>
                    <span aria-hidden="true">{w.state === 'busy' ? '▶' : '■'}</span> {w.state === 'busy' ? 'Busy' : 'Idle'}
                  </span>
                </td>
                <td>
                  {w.active_jobs}
                  {w.concurrency > 0 ? ` / ${w.concurrency}` : ''}
                </td>
                <td>{w.processed}</td>
                <td>{formatTime(w.last_heartbeat)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="card">
        <h2>Queues</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Queue</th>
              <th scope="col">Waiting</th>
              <th scope="col">Active</th>
              <th scope="col">Delayed</th>
              <th scope="col">Failed</th>
            </tr>
          </thead>
          <tbody>
            {status.queues.map((q) => (
              <tr key={q.name}>
                <td class="mono">{q.name}</td>
                <td>{q.waiting}</td>
                <td>{q.active}</td>
                <td>{q.delayed}</td>
                <td>{q.failed}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="card">
        <h2>Server instances</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Host</th>
              <th scope="col">Clients</th>
              <th scope="col">Started</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {status.instances.map((i) => (
              <tr key={i.id}>
                <td class="mono">
                  {i.id}
                  {i.id === status.server.id ? ' (this one)' : ''}
                </td>
                <td>
                  {i.host} <span class="muted">pid {i.pid}</span>
                </td>
                <td>{i.clients}</td>
                <td>{formatTime(i.started_at)}</td>
                <td>{formatTime(i.last_heartbeat)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
