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
    /** The answer's whole `error` object (e.g. `run_id` of an `already_running`). */
    readonly details: Record<string, unknown> = {},
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
    const err = (body as { error?: { code?: string; message?: string } & Record<string, unknown> } | null)?.error;
    if (res.status === 401) requireToken();
    throw new ApiError(res.status, err?.code ?? 'http_error', err?.message ?? `${res.status} ${res.statusText}`, err ?? {});
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
  /**
   * On the first page: starts waiting their turn (status "QUEUED", `queue_position`), not
   * yet tracked runs; the first event of each (seq 1) makes it a run like the others.
   */
  queued?: PipelineStatus[];
}

export interface RunActions {
  run_id: string;
  pipeline_id: string;
  cancel: boolean;
  retry: boolean;
  /** Servers that know resume say whether the caller may resume; older ones leave it out. */
  resume?: boolean;
  delete: boolean;
}

/** A pipeline the server can start (`GET /api/pipelines`). */
export interface PipelineInfo {
  pipeline_id: string;
  description: string | null;
  input_schema: Record<string, unknown> | null;
  /** `on_limit` is left out by servers older than queued starts: "reject" then. */
  concurrency: { limit: number; key: 'pipeline' | 'input'; on_limit?: 'reject' | 'queue' } | null;
  can_start: boolean;
  start_blocked_by?: string;
  start_blocked_reason?: string;
  /** A policy that queues, at its limit: a start now waits its turn behind this run. */
  start_queues_behind?: string;
  latest_run: { run_id: string; status: string; started_at: string | null } | null;
}

/** The answer of a start. */
export interface StartAnswer {
  run_id: string;
  pipeline_id: string;
  /** RUNNING, or QUEUED (202) when the pipeline queues starts over its limit. */
  status: string;
  deduplicated: boolean;
  queue_position?: number;
  waiting_for?: string[];
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
/** What `POST /api/runs/{run_id}/resume` answers (202): the same run, a new attempt. */
export interface ResumeAnswer {
  run_id: string;
  pipeline_id: string;
  status: string;
  attempt?: number;
  kept_steps?: string[];
  pending_steps?: string[];
}

export const resumeRun = (runId: string): Promise<ResumeAnswer> => api(`/api/runs/${encodeURIComponent(runId)}/resume`, { method: 'POST' });
export const listPipelines = (): Promise<{ pipelines: PipelineInfo[] }> => api('/api/pipelines');
export const startRun = (pipelineId: string, input: unknown, idempotencyKey: string): Promise<StartAnswer> =>
  api(`/api/pipelines/${encodeURIComponent(pipelineId)}/runs`, { method: 'POST', body: { input, idempotency_key: idempotencyKey } });
export const getMetrics = (days: number): Promise<PipelineMetrics> => api<PipelineMetrics>(`/api/metrics?days=${days}`);
export const getHistory = (limit: number): Promise<{ runs: PipelineStatus[] }> => api(`/api/history?limit=${limit}`);
export const getEngine = (): Promise<EngineStatus> => api<EngineStatus>('/api/engine');
