/**
 * prom-client's default metrics (process CPU, memory, file descriptors, event loop lag,
 * GC, Node.js version…, names in docs/server.md "Metrics"), collected once per process
 * in a registry of flowcast's own: never prom-client's global registry, which the
 * application embedding flowcast may use for the same metrics, and never twice (each
 * collection starts observers that live as long as the process).
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

let registry: Registry | null = null;

/** The registry holding this process's default metrics, created on first use. */
export function processMetricsRegistry(): Registry {
  if (registry === null) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
  }
  return registry;
}
