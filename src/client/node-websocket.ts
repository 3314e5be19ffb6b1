/**
 * The WebSocket class where the runtime has none (Node 20): the `ws` package, an optional
 * peer dependency, loaded on first use by a dynamic import whose specifier bundlers leave
 * alone, so the browser bundle holds no Node code (browsers and Node 22+ have a global
 * WebSocket and never get here).
 */
import { describeError, ErrorCodes } from '../core/errors.js';
import { MonitorError } from './errors.js';
import type { WebSocketConstructor } from './types.js';

/** The package, in a variable: a bundler that meets `import('ws')` would pull it in. */
const WS_PACKAGE = 'ws';

let loading: Promise<WebSocketConstructor> | null = null;

/**
 * The `ws` package's WebSocket class (loaded once; a failed load is tried again by the
 * next caller, e.g. after the package was installed).
 *
 * @throws MonitorError (`CONNECTION_FAILED`) naming the package when it cannot be loaded.
 */
export function loadWsPackage(): Promise<WebSocketConstructor> {
  loading ??= (async () => {
    let mod: { WebSocket?: unknown; default?: unknown };
    try {
      mod = (await import(/* @vite-ignore */ /* webpackIgnore: true */ WS_PACKAGE)) as { WebSocket?: unknown; default?: unknown };
    } catch (error) {
      loading = null;
      throw new MonitorError(
        ErrorCodes.CONNECTION_FAILED,
        `flowcast/client: this runtime has no global WebSocket (Node before 22): install the "ws" package (npm install ws), or pass { WebSocket } to new PipelineMonitor(url, options). Loading "ws" failed: ${describeError(error)}`,
        { cause: error },
      );
    }
    const WebSocket = mod.WebSocket ?? mod.default;
    if (typeof WebSocket !== 'function') {
      loading = null;
      throw new MonitorError(ErrorCodes.CONNECTION_FAILED, `flowcast/client: the "ws" package has no WebSocket class: pass { WebSocket } to new PipelineMonitor(url, options)`);
    }
    return WebSocket as WebSocketConstructor;
  })();
  return loading;
}
