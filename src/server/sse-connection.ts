import type { ServerResponse } from 'node:http';
import type { FlowcastEvent } from '../events/types.js';
import { Connection, type OutgoingLimits } from './connection.js';
import type { Principal } from './auth.js';

/**
 * A Server-Sent Events subscriber (`GET /api/events`). Events carry `id: <run_id>:<seq>`
 * so a reconnecting EventSource sends `Last-Event-ID` and resumes that run exactly;
 * control messages are sent as `event: control`. Comments keep proxies from timing out.
 */
export class SseConnection extends Connection {
  readonly res: ServerResponse;

  constructor(res: ServerResponse, principal: Principal | null, limits: Required<OutgoingLimits>) {
    super(principal, limits);
    this.res = res;
    res.once('close', () => this.markClosed());
  }

  protected bufferedBytes(): number {
    return this.res.writableLength;
  }

  frame(json: Buffer, event: FlowcastEvent | null): Buffer {
    if (event === null) return Buffer.concat([Buffer.from('event: control\ndata: '), json, Buffer.from('\n\n')]);
    return Buffer.concat([Buffer.from(`id: ${event.run_id}:${event.seq}\ndata: `), json, Buffer.from('\n\n')]);
  }

  protected writeBatch(items: Buffer[]): void {
    if (this.res.writableEnded) return;
    this.res.write(items.length === 1 ? (items[0] as Buffer) : Buffer.concat(items));
  }

  /** A comment line: keeps the stream alive through proxies. */
  heartbeat(): void {
    if (!this.res.writableEnded) this.res.write(': ping\n\n');
  }

  protected closeTransport(_code: number, _reason: string): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
