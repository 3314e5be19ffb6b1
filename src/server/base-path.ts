/**
 * The path flowcast is served under: `''` at the root of its own server, `/flowcast`
 * (say) when it is mounted into another app. Everything (the dashboard and its files,
 * REST, SSE, the WebSocket endpoint, `/health`, `/metrics`) lives under it, and the
 * dashboard learns it from the page the server hands out.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { show } from '../core/validate.js';

const SEGMENTS = /^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$/;

/**
 * Checks a base path (`/flowcast`, `/ops/flowcast`; a trailing `/` is dropped) and
 * returns it normalised; `''` and `'/'` mean the root.
 */
export function checkBasePath(value: unknown, name = 'basePath'): string {
  if (value === undefined || value === '' || value === '/') return '';
  if (typeof value !== 'string' || value.length > 200) throw new InvalidArgumentError(`${name} must be a path such as "/flowcast", received ${show(value)}`);
  const path = value.replace(/\/+$/, '');
  if (!SEGMENTS.test(path) || path.split('/').some((s) => s === '.' || s === '..')) {
    throw new InvalidArgumentError(`${name} must be a path such as "/flowcast" (starting with "/", no "..", no query), received ${show(value)}`);
  }
  return path;
}

/** Is the request path (no query) `base` itself or under it? Always true at the root. */
export function isUnder(path: string, base: string): boolean {
  return base === '' || path === base || path.startsWith(`${base}/`);
}

/** The path of a request's URL, without the query; `null` when it is not a path. */
export function pathOf(url: string | undefined): string | null {
  if (url === undefined || !url.startsWith('/')) return null;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** Escapes a value for an HTML attribute. */
function attr(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

/**
 * The dashboard's index.html for a server under `base`: its files' relative URLs
 * (`./assets/…`, the build uses `base: './'`) made absolute under `${base}/dashboard/`,
 * since the page is also served at client-side routes such as `/dashboard/runs/x`, and
 * a `<meta name="flowcast-base">` the dashboard reads to reach the API and WebSocket.
 */
export function dashboardPage(html: string, base: string): string {
  const files = `${base}/dashboard/`;
  const out = html.replace(/(\s(?:src|href)=")\.\//g, `$1${attr(files)}`);
  const meta = `<meta name="flowcast-base" content="${attr(base)}">`;
  return out.includes('<head>') ? out.replace('<head>', `<head>\n${meta}`) : `${meta}\n${out}`;
}
