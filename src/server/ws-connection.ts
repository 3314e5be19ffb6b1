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

/** `payload` as one WebSocket text frame (header and payload in one buffer). */
function textFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + n);
  frame[0] = TEXT_FIN;
  if (n < 126) {
    frame[1] = n;
  } else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  payload.copy(frame, header);
  return frame;
}

/**
 * The hub hands the same serialised event to every subscriber in turn, so the frame of
 * the last payload seen is made once and shared by all of them.
 */
let lastPayload: Buffer | null = null;
let lastFrame: Buffer | null = null;

/**
 * A WebSocket subscriber. Each message is one text frame, framed once per event for all
 * subscribers; the frames queued for a connection go to its socket as one write (one
 * system call for a burst of events instead of one per event).
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
    if (json !== lastPayload) {
      lastFrame = textFrame(json);
      lastPayload = json;
    }
    return lastFrame as Buffer;
  }

  protected writeBatch(frames: Buffer[]): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const sender = this.#sender;
    // ws queues frames only while it compresses (off here) or reads a Blob; then let it keep the order.
    if (sender === null || (sender._state ?? 0) !== 0 || (sender._queue?.length ?? 0) > 0) {
      for (const frame of frames) ws.send(frame.subarray(frame[1] === 126 ? 4 : frame[1] === 127 ? 10 : 2), { binary: false });
      return;
    }
    sender.sendFrame([frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames)]);
  }

  protected closeTransport(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }
}
