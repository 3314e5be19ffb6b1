import type { WebSocket } from 'ws';
import type { FlowcastEvent } from '../events/types.js';
import { Connection, type OutgoingLimits } from './connection.js';
import type { Principal } from './auth.js';

/** The part of ws's (private) `Sender` used to write ready-made frames, as Socket.IO's engine does. */
interface FrameSender {
  sendFrame(list: Buffer[], cb?: (error?: Error) => void): void;
  _state?: number;
  _queue?: unknown[];
}

/** `0x81`: FIN, text frame. Server frames are not masked (RFC 6455 §5.1). */
const TEXT_FIN = 0x81;

function headerLength(payload: number): number {
  return payload < 126 ? 2 : payload < 65536 ? 4 : 10;
}

/**
 * A WebSocket subscriber. Each message is one text frame; a batch of messages is framed
 * into one buffer and handed to the socket as one write (one system call for a burst of
 * events, instead of one per event).
 */
export class WsConnection extends Connection {
  readonly ws: WebSocket;
  /** When the peer last answered a ping (or sent anything). */
  lastSeen = Date.now();
  readonly #sender: FrameSender | null;

  /** `onClosed` runs once the socket is closed (after this connection is marked closed). */
  constructor(ws: WebSocket, principal: Principal | null, limits: Required<OutgoingLimits>, onClosed?: (conn: WsConnection) => void) {
    super(principal, limits);
    this.ws = ws;
    const sender = (ws as unknown as { _sender?: FrameSender })._sender;
    this.#sender = sender !== undefined && typeof sender.sendFrame === 'function' ? sender : null;
    // ws emits 'close' once; `on` spares the wrapper `once` would make per connection.
    ws.on('close', () => {
      this.markClosed();
      onClosed?.(this);
    });
  }

  protected bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  frame(json: Buffer, _event: FlowcastEvent | null): Buffer {
    return json;
  }

  protected writeBatch(items: Buffer[]): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const sender = this.#sender;
    // ws queues frames only while it compresses (off here) or reads a Blob; then let it keep the order.
    if (sender === null || (sender._state ?? 0) !== 0 || (sender._queue?.length ?? 0) > 0) {
      for (const data of items) ws.send(data, { binary: false });
      return;
    }
    let size = 0;
    for (const data of items) size += headerLength(data.length) + data.length;
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    for (const data of items) {
      const n = data.length;
      out[at++] = TEXT_FIN;
      if (n < 126) {
        out[at++] = n;
      } else if (n < 65536) {
        out[at++] = 126;
        out.writeUInt16BE(n, at);
        at += 2;
      } else {
        out[at++] = 127;
        out.writeUInt32BE(Math.floor(n / 0x1_0000_0000), at);
        out.writeUInt32BE(n >>> 0, at + 4);
        at += 8;
      }
      at += data.copy(out, at);
    }
    sender.sendFrame([out]);
  }

  protected closeTransport(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }
}
