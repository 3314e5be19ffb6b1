/**
 * The pipeline plans {@link RedisRunState} has parsed, shared by every run state of the
 * process: the runs of one pipeline share one frozen plan object, found by its JSON (as
 * read from Redis) or by its digest (as a `RunStateHandoff` names it, run-state-cache.ts).
 */
import { createHash } from 'node:crypto';
import type { PipelinePlan } from '../pipeline/plan.js';

/** Freezes a plan deeply: a transition that tried to change it would throw instead of diverging from Redis. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Plans parsed and frozen, by their JSON: the runs of one pipeline share one (read-only) object. */
const plans = new Map<string, PipelinePlan>();
/** The same plans by a digest of their JSON (what a `RunStateHandoff` names). */
const plansByKey = new Map<string, PipelinePlan>();
/** A kept plan's digest. */
const planKeys = new WeakMap<PipelinePlan, string>();
/** The JSON of the plan objects `create` was given (a pipeline passes the same one for every run). */
const planJsons = new WeakMap<PipelinePlan, string>();
const PLANS_KEPT = 256;

/** The plan of this JSON, parsed and frozen once (the oldest of {@link PLANS_KEPT} goes when a new one comes). */
export function parsedPlan(json: string): PipelinePlan {
  let plan = plans.get(json);
  if (plan === undefined) {
    plan = deepFreeze(JSON.parse(json) as PipelinePlan);
    const key = createHash('sha1').update(json).digest('base64url');
    if (plans.size >= PLANS_KEPT) {
      const oldest = plans.entries().next().value as [string, PipelinePlan];
      plans.delete(oldest[0]);
      plansByKey.delete(planKeys.get(oldest[1]) ?? '');
    }
    plans.set(json, plan);
    plansByKey.set(key, plan);
    planKeys.set(plan, key);
  }
  return plan;
}

/** A plan's JSON, serialised once per plan object. */
export function planJsonOf(plan: PipelinePlan): string {
  let json = planJsons.get(plan);
  if (json === undefined) {
    json = JSON.stringify(plan);
    if (typeof plan === 'object' && plan !== null) planJsons.set(plan, json);
  }
  return json;
}

/** The digest of a plan that {@link parsedPlan} keeps (`undefined` for any other object). */
export function planDigest(plan: PipelinePlan): string | undefined {
  return planKeys.get(plan);
}

/** The kept plan of this digest, if still kept. */
export function planByDigest(digest: string): PipelinePlan | undefined {
  return plansByKey.get(digest);
}
