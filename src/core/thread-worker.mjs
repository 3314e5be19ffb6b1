// Runs inside a worker thread of the broker's pool (piscina). Loads the task's module,
// builds a context whose log() and progress() post to the main thread through a
// MessagePort owned by this one call, and posts "done" before returning so the main
// thread has every line before it records the result.
import { format } from 'node:util';

function toLines(args) {
  const out = [];
  for (const arg of args) {
    const text = typeof arg === 'string' ? arg : format('%O', arg);
    for (const line of text.split(/\r?\n/)) out.push(line);
  }
  return out;
}

export default async function runThreadTask({ module, exportName, input, info, port }) {
  const controller = new AbortController();
  port.on('message', (message) => {
    if (message && message.type === 'abort') controller.abort(new Error(String(message.reason)));
  });
  try {
    const mod = await import(module);
    const fn = mod[exportName];
    if (typeof fn !== 'function') {
      throw new TypeError(`Thread task module ${module} has no exported function "${exportName}"`);
    }
    const ctx = {
      ...info,
      signal: controller.signal,
      log: (...lines) => {
        if (lines.length > 0) port.postMessage({ type: 'log', lines: toLines(lines) });
      },
      progress: (fraction, message) => {
        if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction > 1) {
          throw new RangeError(`ctx.progress(fraction): fraction must be a number from 0 to 1, received ${String(fraction)}`);
        }
        port.postMessage({ type: 'progress', fraction, message });
      },
    };
    return await fn(input, ctx);
  } finally {
    port.postMessage({ type: 'done' });
    port.close();
  }
}
