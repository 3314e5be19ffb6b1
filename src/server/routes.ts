import type { FastifyInstance } from 'fastify';
import type { Broker } from '../core/broker.js';
import type { SnapshotSource } from './hub.js';
import type { FlowcastServer } from './server.js';

/** What the REST API needs of tracking (a PipelineTrackingManager fits). */
export type TrackingLike = SnapshotSource;

export interface RoutesContext {
  server: FlowcastServer;
  tracking: TrackingLike | null;
  broker: Broker | null;
  staticDir: string | null;
}

/** `/health` (open, no auth), and the REST API, `/metrics` and static files. */
export function registerRoutes(app: FastifyInstance, ctx: RoutesContext): void {
  const started = Date.now();
  app.get('/health', () => ({
    status: 'healthy',
    uptime_s: Math.round((Date.now() - started) / 1000),
    connections: ctx.server.hub.connectionCount,
  }));
}
