import { FlowcastError, type ErrorCode } from '../core/errors.js';

/**
 * An error of the client: the connection failed (`CONNECTION_FAILED`, with the close
 * code), the token was rejected (`UNAUTHORIZED`), the server refused a request
 * (`REQUEST_REJECTED`, with the server's code such as `forbidden`), or the monitor was
 * closed (`CLOSED`).
 */
export class MonitorError extends FlowcastError {
  override readonly name = 'MonitorError';
  /** The WebSocket close code behind a connection error. */
  readonly closeCode: number | undefined;
  /** The server's `error` code (`forbidden`, `bad_message`, `too_many_subscriptions`...) behind a rejected request. */
  readonly serverCode: string | undefined;

  constructor(code: ErrorCode, message: string, details: { closeCode?: number; serverCode?: string; cause?: unknown } = {}) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.closeCode = details.closeCode;
    this.serverCode = details.serverCode;
  }
}
