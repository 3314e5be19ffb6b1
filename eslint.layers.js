// @ts-check
/**
 * The layers of src/ (docs/architecture.md): a folder may import only from folders of a
 * LOWER rank, never from its own rank's other folders or from above. `npm run lint` fails on
 * a wrong-way import; `import-x/no-cycle` fails on a cycle inside a folder too.
 *
 *   5  cli (may also use the client SDK)
 *   4  server, redis, demo
 *   3  pipeline, scheduler
 *   2  tracking, transport
 *   1  events
 *   0  core
 *
 * The client SDK (src/client) and the dashboard are apart: they take the protocol's types
 * and the shared pure helpers (core's errors and checks, events' types, tracking's models,
 * metrics and reducer), never the engine, the transports, the server or Redis.
 */
export const LAYERS = {
  core: 0,
  events: 1,
  tracking: 2,
  transport: 2,
  pipeline: 3,
  scheduler: 3,
  server: 4,
  redis: 4,
  demo: 4,
  cli: 5,
};

/** Folders the SDK and the dashboard must not import (except the files listed). */
const CLIENT_FORBIDDEN = ['transport', 'pipeline', 'scheduler', 'redis', 'demo', 'cli'];

/** The zones of import-x/no-restricted-paths that say the above. */
export function layerZones() {
  /** @type {{ target: string, from: string, except?: string[], message: string }[]} */
  const zones = [];
  const folders = /** @type {(keyof typeof LAYERS)[]} */ (Object.keys(LAYERS));
  for (const target of folders) {
    for (const from of folders) {
      if (from === target || LAYERS[from] < LAYERS[target]) continue;
      zones.push({
        target: `./src/${target}`,
        from: `./src/${from}`,
        message: `src/${target} (layer ${LAYERS[target]}) may not import src/${from} (layer ${LAYERS[from]}): imports go down the layers only (docs/architecture.md)`,
      });
    }
    // The CLI talks to servers through the SDK; nothing below it may.
    if (target !== 'cli') zones.push({ target: `./src/${target}`, from: './src/client', message: `src/${target} may not import the client SDK: the SDK sits apart, on the protocol only` });
  }
  for (const from of CLIENT_FORBIDDEN) {
    zones.push({ target: './src/client', from: `./src/${from}`, message: `the client SDK may not import src/${from}: it takes only the protocol's types and shared helpers` });
  }
  zones.push({ target: './src/client', from: './src/server', except: ['./protocol.ts'], message: 'the client SDK may import only the protocol types of src/server (protocol.ts)' });
  zones.push({ target: './src/client', from: './src/tracking', except: ['./models.ts'], message: 'the client SDK may import only the models of src/tracking' });
  for (const from of [...CLIENT_FORBIDDEN, 'server']) {
    zones.push({ target: './dashboard', from: `./src/${from}`, message: `the dashboard may not import src/${from}: it takes the client SDK and the protocol's types` });
  }
  zones.push({ target: './dashboard', from: './src/tracking', except: ['./models.ts', './metrics.ts', './reducer.ts'], message: 'the dashboard may import only tracking models, metrics and the reducer' });
  return zones;
}
