import type { WebSocket } from 'ws';
import type { FlowcastEvent } from '../events/types.js';
import { Connection, type OutgoingLimits } from './connection.js';
import type { Principal } from './auth.js';
import { deflatedFrame, messageOf, plainFrame } from './ws-frames.js';

/** The part of ws's (private) `Sender` used to write ready-made frames, as Socket.IO's engine does. */
interface FrameSender {
  sendFrame(list: Buffer[], cb?: (error?: Error) => void): void;
  _state?: number;
  _queue?: unknown[];
}

/** What ws (privately) keeps of a negotiated permessage-deflate: its parameters and the server's threshold. */
interface NegotiatedDeflate {
  params?: { server_no_context_takeover?: boolean; server_max_window_bits?: number | boolean } | null;
  _threshold?: number;
}

/** How this connection compresses: messages of `threshold` bytes or more, with a window of `windowBits`. */
interface Deflate {
  threshold: number;
  windowBits: number;
}

/**
 * The compression negotiated with this client, or `null`. Without server context
 * takeover (which the server always asks for), a message compresses the same for every
 * connection with the same window: compressed once, shared.
 */
function negotiated(ws: WebSocket): Deflate | null {
  const ext = (ws as unknown as { _extensions?: Record<string, NegotiatedDeflate | undefined> })._extensions?.['permessage-deflate'];
  if (ext?.params?.server_no_context_takeover !== true) return null;
  const bits = ext.params.server_max_window_bits;
  return { threshold: typeof ext._threshold === 'number' ? ext._threshold : 1024, windowBits: typeof bits === 'number' ? bits : 15 };
}

/**
 * A WebSocket subscriber. Each message is one text frame, framed once per event for all
 * subscribers; the frames queued for a connection go to its socket as one write (one
 * system call for a burst of events instead of one per event).
 *
 * With permessage-deflate negotiated (server option `perMessageDeflate`), a message of
 * the threshold or more goes in a compressed frame (RSV1), also made once per event for
 * every connection with the same window (see ws-frames.ts).
 */
export class WsConnection extends Connection {
  readonly ws: WebSocket;
  /** When the peer last answered a ping (or sent anything). */
  lastSeen = Date.now();
  readonly #sender: FrameSender | null;
  /** permessage-deflate, when negotiated. */
  readonly #deflate: Deflate | null;

  /** `onClosed` runs once the socket is closed (after this connection is marked closed). */
  constructor(ws: WebSocket, principal: Principal | null, limits: Required<OutgoingLimits>, onClosed?: (conn: WsConnection) => void) {
    super(principal, limits);
    this.ws = ws;
    const sender = (ws as unknown as { _sender?: FrameSender })._sender;
    this.#sender = sender !== undefined && typeof sender.sendFrame === 'function' ? sender : null;
    // Negotiated with context takeover (not by this server): ws compresses, through `ws.send`.
    this.#deflate = ws.extensions === '' ? null : negotiated(ws);
    if (ws.extensions !== '' && this.#deflate === null) this.#sender = null;
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
    const deflate = this.#deflate;
    return deflate !== null && json.length >= deflate.threshold ? deflatedFrame(json, deflate.windowBits) : plainFrame(json);
  }

  protected writeBatch(frames: Buffer[]): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const sender = this.#sender;
    // ws queues frames only while it compresses or reads a Blob; then let it keep the order
    // (and compress, with the parameters negotiated).
    if (sender === null || (sender._state ?? 0) !== 0 || (sender._queue?.length ?? 0) > 0) {
      for (const frame of frames) ws.send(messageOf(frame), { binary: false });
      return;
    }
    sender.sendFrame([frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames)]);
  }

  protected closeTransport(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }
}
