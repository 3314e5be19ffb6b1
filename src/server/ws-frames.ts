/**
 * WebSocket frames built once per message and shared by every subscriber, plain or
 * compressed (permessage-deflate, RFC 7692). The hub hands the same serialised event to
 * every subscriber in turn, so the frame of the last payload seen is kept and reused:
 * one `JSON.stringify`, one frame and, with deflate, one compression per event, however
 * many connections get it.
 *
 * Compression once per event is possible because the server negotiates
 * `server_no_context_takeover`: each message is compressed on its own, so its bytes
 * depend only on the message and the window size (the client may ask for a smaller one:
 * frames are kept per window size).
 */
import { constants as zlib, deflateRawSync } from 'node:zlib';

/** `0x81`: FIN, text frame. `0xc1`: FIN, RSV1 (compressed), text frame. Server frames are not masked (RFC 6455 §5.1). */
const TEXT_FIN = 0x81;
const TEXT_FIN_COMPRESSED = 0xc1;

/** `payload` as one WebSocket text frame (header and payload in one buffer). */
function textFrame(payload: Buffer, first: number): Buffer {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + n);
  frame[0] = first;
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

let lastPayload: Buffer | null = null;
let lastFrame: Buffer | null = null;

/** The plain text frame of `json` (shared while the same payload is asked for). */
export function plainFrame(json: Buffer): Buffer {
  if (json !== lastPayload) {
    lastFrame = textFrame(json, TEXT_FIN);
    lastPayload = json;
  }
  return lastFrame as Buffer;
}

let lastDeflated: Buffer | null = null;
/** Compressed frames of `lastDeflated`, by window size. */
const deflatedFrames = new Map<number, Buffer>();
/** The message of each compressed frame, for a connection that must hand it to `ws.send` instead. */
const messages = new WeakMap<Buffer, Buffer>();

/**
 * The compressed text frame of `json` (RSV1 set), for a connection that negotiated
 * permessage-deflate without server context takeover and a window of `windowBits`
 * (shared while the same payload is asked for).
 */
export function deflatedFrame(json: Buffer, windowBits: number): Buffer {
  if (json !== lastDeflated) {
    deflatedFrames.clear();
    lastDeflated = json;
  }
  let frame = deflatedFrames.get(windowBits);
  if (frame === undefined) {
    // RFC 7692 §7.2.1: flushed with Z_SYNC_FLUSH, without the 00 00 ff ff it ends with.
    const deflated = deflateRawSync(json, { windowBits, finishFlush: zlib.Z_SYNC_FLUSH });
    frame = textFrame(deflated.subarray(0, deflated.length - 4), TEXT_FIN_COMPRESSED);
    messages.set(frame, json);
    deflatedFrames.set(windowBits, frame);
  }
  return frame;
}

/** The message a frame of {@link plainFrame} or {@link deflatedFrame} carries, uncompressed. */
export function messageOf(frame: Buffer): Buffer {
  const message = messages.get(frame);
  if (message !== undefined) return message;
  return frame.subarray(frame[1] === 126 ? 4 : frame[1] === 127 ? 10 : 2);
}
