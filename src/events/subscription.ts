/**
 * Subscription keys: the one name a subscription has on both ends of the WebSocket, so the
 * server's hub and the client SDK agree on it without writing it twice. A client
 * subscribes to a run (`run_id`), a pipeline (`pipeline_id`) or every run
 * (`pipeline_id: "*"`); each has one key.
 */

/** The key of the subscription to every run (`pipeline_id: "*"`). */
export const ALL_KEY = 'all';

/** The key of the subscription to one run. */
export function runKey(runId: string): string {
  return `r:${runId}`;
}

/** The key of the subscription to one pipeline's runs (`"*"`: every run, {@link ALL_KEY}). */
export function pipelineKey(pipelineId: string): string {
  return pipelineId === '*' ? ALL_KEY : `p:${pipelineId}`;
}

/** What a subscribe or unsubscribe message names: a run, or else a pipeline (or `"*"`). */
export interface SubscriptionTarget {
  run_id?: string | undefined;
  pipeline_id?: string | undefined;
}

/** The key of the subscription `target` names (a run wins over a pipeline, as in the protocol). */
export function subscriptionKey(target: SubscriptionTarget): string {
  return target.run_id !== undefined ? runKey(target.run_id) : pipelineKey(target.pipeline_id ?? '*');
}

/** What a key subscribes to, the shape `EventTransport.subscribe` takes. */
export function keyChannel(key: string): '*' | { runId: string } | { pipelineId: string } {
  if (key === ALL_KEY) return '*';
  return key.startsWith('r:') ? { runId: key.slice(2) } : { pipelineId: key.slice(2) };
}
