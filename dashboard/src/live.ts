/**
 * The live side: one {@link PipelineMonitor} (the project's client SDK) per page, over
 * the WebSocket of the server that served the page. Never polling.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { PipelineMonitor, type ConnectionState, type PipelineMonitorOptions } from '../../src/client/index.js';
import { getToken, requireToken } from './session.js';
import { basePath } from './base.js';

/** The WebSocket endpoint of the server that served this page. */
export function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${basePath}/ws`;
}

type Listener = (state: ConnectionState, wasOpen: boolean) => void;
const stateListeners = new Set<Listener>();

/** Every page's monitor reports here: the offline banner listens. */
export function onConnectionState(listener: Listener): () => void {
  stateListeners.add(listener);
  return () => void stateListeners.delete(listener);
}

/** A monitor made for this page, connected while the component is mounted. */
export function createMonitor(options: Pick<PipelineMonitorOptions, 'lateJoin' | 'eventTypes'> = {}): PipelineMonitor {
  const token = getToken();
  const monitor = new PipelineMonitor(wsUrl(), {
    ...options,
    ...(token === null ? {} : { token }),
    reconnect: { initialDelayMs: 250, maxDelayMs: 3000 },
  });
  let wasOpen = false;
  monitor.on('state', (change) => {
    if (change.to === 'open') wasOpen = true;
    for (const l of stateListeners) l(change.to, wasOpen);
  });
  monitor.on('error', (error) => {
    if ((error as { code?: string }).code === 'UNAUTHORIZED') requireToken();
  });
  return monitor;
}

/**
 * Creates a monitor on mount, lets `setup` subscribe and listen, connects, and closes it
 * on unmount or when `deps` change. `onReconnect` runs each time the connection opens
 * again after a drop (to reload what REST gave).
 */
export function useMonitor(
  setup: (monitor: PipelineMonitor) => void,
  deps: unknown[],
  options: Pick<PipelineMonitorOptions, 'lateJoin' | 'eventTypes'> & { onReconnect?: () => void } = {},
): ConnectionState {
  const [state, setState] = useState<ConnectionState>('idle');
  const reconnect = useRef(options.onReconnect);
  reconnect.current = options.onReconnect;
  useEffect(() => {
    const { onReconnect: _ignored, ...monitorOptions } = options;
    const monitor = createMonitor(monitorOptions);
    let opened = false;
    monitor.on('state', (change) => {
      setState(change.to);
      if (change.to === 'open') {
        if (opened) reconnect.current?.();
        opened = true;
      }
    });
    setup(monitor);
    monitor.connect().catch(() => undefined);
    return () => void monitor.close();
  }, deps);
  return state;
}

/** Subscribes and ignores the rejection a closing monitor gives (the page moved on). */
export function subscribeQuietly(monitor: PipelineMonitor, target: Parameters<PipelineMonitor['subscribe']>[0], onError?: (e: Error) => void): void {
  monitor.subscribe(target).catch((error: Error) => {
    if ((error as { code?: string }).code !== 'CLOSED') onError?.(error);
  });
}
