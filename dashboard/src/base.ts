/**
 * The path the server serves flowcast under: `''` on its own server, `/flowcast` (say)
 * when it is mounted into another app. The server writes it into the page as
 * `<meta name="flowcast-base">`; the API, the WebSocket and the page links start with it.
 */
function readBase(): string {
  if (typeof document === 'undefined') return '';
  const value = document.querySelector('meta[name="flowcast-base"]')?.getAttribute('content') ?? '';
  // Only a plain path is taken: anything else means the root.
  return /^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)*$/.test(value) ? value : '';
}

/** The base path, read once. */
export const basePath: string = readBase();
