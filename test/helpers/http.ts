/**
 * Raw HTTP requests for the security tests: any header (Host, Origin, X-Forwarded-For,
 * Sec-Fetch-Site), any body, from a chosen local address (127.0.0.2 is another client
 * on Linux loopback), with the status, headers and body of the answer.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export interface RawRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The local address to send from. @default the system's choice (127.0.0.1) */
  localAddress?: string;
  timeoutMs?: number;
}

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** `error.code` and `error.message` of a JSON error body. */
  error: { code: string; message: string } | null;
}

/** Sends one request and reads the whole answer (for SSE, only the head: the stream is closed at once). */
export function raw(base: string, path: string, options: RawRequest = {}): Promise<RawAnswer> {
  const url = new URL(path, base);
  return new Promise<RawAnswer>((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'GET',
        headers: { connection: 'close', ...options.headers },
        ...(options.localAddress !== undefined && { localAddress: options.localAddress }),
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const sse = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
        let text = '';
        res.setEncoding('utf8');
        const done = (): void => {
          let error: RawAnswer['error'] = null;
          try {
            const body = JSON.parse(text) as { error?: { code: string; message: string } };
            error = body.error ?? null;
          } catch {
            error = null;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, error });
        };
        if (sse) {
          res.once('data', (chunk: string) => {
            text += chunk;
            req.destroy();
            done();
          });
          return;
        }
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', done);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path}: no answer within ${options.timeoutMs ?? 10_000}ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}
