import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { FlowcastEvent } from '../events/types.js';
import { Connection, type OutgoingLimits } from './connection.js';
import type { Principal } from './auth.js';

/** A WebSocket subscriber. Each message is one text frame; a batch is written corked (one network write). */
export class WsConnection extends Connection {
  readonly ws: WebSocket;
  /** When the peer last answered a ping (or sent anything). */
  lastSeen = Date.now();
  readonly #socket: Socket | undefined;

  constructor(ws: WebSocket, principal: Principal | null, limits: Required<OutgoingLimits>) {
    super(principal, limits);
    this.ws = ws;
    // ws keeps its net.Socket private; corking it makes a batch of frames one write.
    this.#socket = (ws as unknown as { _socket?: Socket })._socket;
    ws.once('close', () => this.markClosed());
  }

  protected bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  frame(json: Buffer, _event: FlowcastEvent | null): Buffer {
    return json;
  }

  protected writeBatch(items: Buffer[]): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const socket = this.#socket;
    socket?.cork();
    for (const data of items) this.ws.send(data, { binary: false });
    if (socket !== undefined) process.nextTick(() => socket.uncork());
  }

  protected closeTransport(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }
}
