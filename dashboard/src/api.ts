/** REST calls of the dashboard: JSON, with the session's token, errors as {@link ApiError}. */
import { basePath } from './base.js';
import { getToken, requireToken } from './session.js';
import type { PipelineStatus } from '../../src/tracking/models.js';
import type { PipelineMetrics } from '../../src/tracking/metrics.js';
import type { EngineStatus } from '../../src/core/engine-status.js';
import type { FlowcastEvent } from '../../src/events/types.js';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Calls `path` (`/api/...`) and parses the JSON answer. A 401 also makes the page ask for a token. */
export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = getToken();
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const request: RequestInit = { method: init.method ?? 'GET', headers };
  if (init.body !== undefined) {
    headers['content-type'] = 'application/json';
    request.body = JSON.stringify(init.body);
  }
  const res = await fetch(basePath + path, request);
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 401) requireToken();
    throw new ApiError(res.status, err?.code ?? 'http_error', err?.message ?? `${res.status} ${res.statusText}`);
  }
  return body as T;
}

export interface Session {
  auth_required: boolean;
  authenticated: boolean;
  principal: { id: string; pipelines: '*' | string[] } | null;
}

export interface RunsPage {
  runs: PipelineStatus[];
  limit: number;
  offset: number;
  next_offset: number | null;
}

export interface RunActions {
  run_id: string;
  pipeline_id: string;
  cancel: boolean;
  retry: boolean;
  delete: boolean;
}

export interface EventsPage {
  events: FlowcastEvent[];
  last_seq: number;
  next_since: number;
}

export type { PipelineStatus, PipelineMetrics, EngineStatus, FlowcastEvent };

export const getSession = (): Promise<Session> => api<Session>('/api/session');
export const listRuns = (offset: number, limit: number): Promise<RunsPage> => api<RunsPage>(`/api/runs?limit=${limit}&offset=${offset}`);
export const getRun = (runId: string): Promise<PipelineStatus> => api<PipelineStatus>(`/api/runs/${encodeURIComponent(runId)}`);
export const getActions = (runId: string): Promise<RunActions> => api<RunActions>(`/api/runs/${encodeURIComponent(runId)}/actions`);
export const cancelRun = (runId: string): Promise<unknown> =>
  api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: 'POST', body: { reason: 'cancelled from the dashboard' } });
export const retryRun = (runId: string): Promise<{ run_id: string }> => api(`/api/runs/${encodeURIComponent(runId)}/retry`, { method: 'POST' });
export const getMetrics = (days: number): Promise<PipelineMetrics> => api<PipelineMetrics>(`/api/metrics?days=${days}`);
export const getHistory = (limit: number): Promise<{ runs: PipelineStatus[] }> => api(`/api/history?limit=${limit}`);
export const getEngine = (): Promise<EngineStatus> => api<EngineStatus>('/api/engine');
