/**
 * Ending an ioredis connection for good, also while Redis is away.
 *
 * ioredis 5 has a gap here: `disconnect()` on a client that waits to reconnect (status
 * `reconnecting`) cancels the reconnection but leaves the status as it is, and every
 * command the client holds, or is given later, waits forever (redis/ioredis#2169). A
 * close that awaits such a command (a queued run-state transition, a write-behind
 * flush, a QUIT behind other commands) never ends. {@link dropConnection} closes the gap
 * with the public API only.
 */
import type { Redis } from 'ioredis';

/**
 * Ends `redis` now: no reconnection, status `end`, and every command it holds (and any
 * sent later) fails with `Connection is closed.` at once. Safe in any state; idempotent.
 * Commands in flight get no reply: use {@link closeConnection} when Redis may be up.
 */
export function dropConnection(redis: Redis): void {
  if (redis.status === 'end') return;
  // A client waiting to reconnect would stay so after disconnect(): start a connection
  // and cancel it in the same tick instead. The attempt opens no socket; its failure
  // rejects the queued commands and sets the status to "end".
  if (redis.status === 'reconnecting') redis.connect().catch(() => undefined);
  redis.disconnect();
}

/**
 * Closes `redis` politely when it is up (QUIT: the replies of the commands sent before
 * it still arrive), at once with {@link dropConnection} when it is not (QUIT would wait
 * for Redis forever).
 */
export async function closeConnection(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') {
    dropConnection(redis);
    return;
  }
  try {
    await redis.quit();
  } catch {
    dropConnection(redis);
  }
}
