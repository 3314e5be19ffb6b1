/**
 * What bench/distributed.ts prints at the end: one table per part, and the verdict of
 * each issue-18 goal it measures (goal 5 judged on equal queue work only).
 */
import { fmt, fmtInt, median } from '../orchestrator.js';
import type { LayoutResult } from './events.js';
import type { RatePoint } from './log-rates.js';
import type { MemoryResult } from './memory.js';
import type { RedisUsage } from './redis-stats.js';
import type { FlowArm, SideResult, ThroughputResult } from './throughput.js';

const ARM_LABEL: Record<FlowArm, string> = {
  equal: 'flowcast, equal queue work (chainSteps 0: a job per step)',
  chained: 'flowcast, chained (steps of a run in one job; not the verdict)',
  untracked: 'flowcast, equal queue work, untracked',
};

/** Goal 5's target: flowcast >= 0.9x raw BullMQ on equal queue work. */
const GOAL5 = 0.9;

/** `name count` per unit, most first. */
function topList(usage: RedisUsage, units: number, n = 14): string {
  return usage.top
    .filter((c) => c.calls / units >= 0.005)
    .slice(0, n)
    .map((c) => `${c.name} ${fmt(c.calls / units, 2)}`)
    .join(', ');
}

export function reportThroughput(t: ThroughputResult, steps: number): void {
  console.log(`\n### Throughput (${t.concurrencyPerWorker.length} worker processes per arm, concurrency ${t.concurrencyPerWorker.join(' + ')}; ${steps} steps per run; job data ${fmtInt(t.payloadBytes)} bytes)\n`);
  console.log(
    '| arm | steps/s (median) | rounds | / raw (median of rounds) | jobs per step | worker CPU µs per step / per job | redis-server CPU µs per step / per job | producer CPU µs per step | Redis commands per step / per job |',
  );
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|');
  const line = (name: string, s: SideResult, ratios: number[] | null): void => {
    const perJob = (v: number): string => fmt(v / s.jobsPerStep, 0);
    console.log(
      `| ${name} | ${fmtInt(s.perSec)} | ${s.rounds.map(fmtInt).join(', ')} | ${ratios === null ? '1' : `${fmt(median(ratios), 2)}x`} | ${fmt(s.jobsPerStep, 2)} | ` +
        `${fmt(s.workerCpuUs, 0)} / ${perJob(s.workerCpuUs)} | ${fmt(s.redisCpuUs, 0)} / ${perJob(s.redisCpuUs)} | ${fmt(s.producerCpuUs, 0)} | ${fmt(s.redisCalls, 1)} / ${fmt(s.redisCalls / s.jobsPerStep, 1)} |`,
    );
  };
  line('raw BullMQ (a job per step)', t.raw, null);
  for (const a of t.arms) line(ARM_LABEL[a.arm], a.side, a.ratios);
  const units = (s: SideResult): number => s.redis.calls / s.redisCalls;
  console.log(`\nRedis commands per step, by name (INFO commandstats of the median round; commands run by scripts counted too):`);
  console.log(`- raw BullMQ: ${topList(t.raw.redis, units(t.raw))}`);
  for (const a of t.arms) console.log(`- ${a.arm}: ${topList(a.side.redis, units(a.side))}`);
  for (const [name, s] of [['raw BullMQ', t.raw], ...t.arms.map((a) => [a.arm, a.side] as const)] as const) {
    if (s.sent === null) continue;
    const list = Object.entries(s.sent).sort((x, y) => y[1] - x[1]);
    const total = list.reduce((x, [, n]) => x + n, 0);
    console.log(`- sent by the ${name} workers per step: ${fmt(total, 1)} (${list.map(([c, n]) => `${c} ${fmt(n, 2)}`).join(', ')})`);
  }
  console.log('');
  const equal = t.arms.find((a) => a.arm === 'equal');
  if (equal === undefined) {
    console.log(`Goal 5 (flowcast >= ${GOAL5}x raw BullMQ on equal queue work): not measured (add the equal arm: --arms equal,...)`);
  } else {
    const ofMedians = equal.side.perSec / t.raw.perSec;
    const paired = median(equal.ratios);
    // The strictest reading: both the ratio of the medians and the median of the paired rounds.
    const met = Math.min(ofMedians, paired) >= GOAL5;
    console.log(
      `Goal 5, equal queue work: flowcast / raw BullMQ ${fmt(ofMedians, 2)}x of the medians, round by round ${equal.ratios.map((r) => fmt(r, 2)).join(', ')} ` +
        `(median ${fmt(paired, 2)}x); per step ${fmt(equal.side.workerCpuUs / t.raw.workerCpuUs, 1)}x the worker CPU and ${fmt(equal.side.redisCpuUs / t.raw.redisCpuUs, 1)}x the Redis CPU, ` +
        `${fmt(equal.side.redisCalls / t.raw.redisCalls, 1)}x the Redis commands. Target >= ${GOAL5}x (the lower of the two): ${met ? 'met' : 'NOT met'}`,
    );
  }
  for (const a of t.arms) {
    if (a.arm === 'equal') continue;
    console.log(
      `${a.arm} (labelled arm, not the verdict): ${fmt(a.side.perSec / t.raw.perSec, 2)}x raw BullMQ of the medians, round by round ${a.ratios.map((r) => fmt(r, 2)).join(', ')} (median ${fmt(median(a.ratios), 2)}x)`,
    );
  }
}

export function reportMemory(m: MemoryResult, steps: number, lines: number): void {
  const perRun = m.usedMemoryDelta / m.runs;
  const perEvent = perRun / m.eventsPerRun;
  console.log(`\n### Redis memory per run (${fmtInt(m.runs)} runs of ${steps} steps x ${lines} log lines, ${fmt(m.eventsPerRun, 1)} events per run)\n`);
  console.log(
    `used_memory: ${fmtInt(m.usedMemoryDelta)} bytes over ${fmtInt(m.runs)} runs: **${fmtInt(perRun)} bytes per run, ${fmtInt(perEvent)} per event**, ` +
      `${fmt(perEvent / m.wireBytesPerEvent, 2)}x the ${fmtInt(m.wireBytesPerEvent)}-byte wire JSON of an event (mean over the events of 20 runs)\n`,
  );
  console.log('| key kind | keys | bytes (MEMORY USAGE) | per run | per event | x wire JSON per event | TTL of a key (s) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  let runKeys = 0;
  let logBytes = 0;
  for (const k of m.kinds) {
    // Per-run keys divide by the runs that have them; shared keys grow with every run stored.
    const runs = k.perRun ? k.keys : m.runsStored;
    const per = k.bytes / Math.max(1, runs);
    if (k.perRun) runKeys += per;
    if (k.kind === 'log') logBytes = per;
    console.log(
      `| ${k.kind}${k.perRun ? '' : ' (shared)'} | ${fmtInt(k.keys)} | ${fmtInt(k.bytes)} | ${fmtInt(per)} | ${fmt(per / m.eventsPerRun, 0)} | ${fmt(per / m.eventsPerRun / m.wireBytesPerEvent, 2)} | ${k.ttl} |`,
    );
  }
  const stored = logBytes / m.eventsPerRun;
  const overhead = perRun - logBytes;
  console.log(
    `\nper-run keys (MEMORY USAGE) ${fmtInt(runKeys)} bytes per run; the rest of used_memory per run (key space, expiry and index entries, allocator) ${fmtInt(perRun - runKeys)}.`,
  );
  console.log(
    `Goal 7: a stored event (the log key per event) ${fmtInt(stored)} bytes = ${fmt(stored / m.wireBytesPerEvent, 2)}x its wire JSON (target <= 1.5x: ${stored / m.wireBytesPerEvent <= 1.5 ? 'met' : 'NOT met'}); ` +
      `per-run overhead (used_memory per run - the log) ${fmtInt(overhead)} bytes (target <= 2,048: ${overhead <= 2048 ? 'met' : 'NOT met'})`,
  );
}

export function reportLogRates(points: RatePoint[]): void {
  console.log('\n### Log events from 2 workers (ctx.log) to a WebSocket client through Redis\n');
  console.log('| servers | log events/s | delivered / expected (per client) | p50 ms | p99 ms | max ms | held (all delivered, p99 <= 50 ms) | Redis commands per log event | redis-server CPU µs per log event | worker CPU µs per log event |');
  console.log('|---:|---:|---|---:|---:|---:|---|---:|---:|---:|');
  for (const p of points) {
    console.log(
      `| ${p.instances} | ${fmtInt(p.rate)} | ${fmtInt(p.delivered)} / ${fmtInt(p.expected)} | ${fmt(p.p50, 1)} | ${fmt(p.p99, 1)} | ${fmt(p.max, 1)} | ${p.held ? 'yes' : 'NO'} | ` +
        `${fmt(p.commandsPerEvent, 1)} | ${fmt(p.redisCpuUsPerEvent, 1)} | ${fmt(p.workerCpuUsPerEvent, 1)} |`,
    );
  }
  const layouts = [...new Set(points.map((p) => p.instances))];
  for (const n of layouts) {
    const mine = points.filter((p) => p.instances === n);
    const held = mine.filter((p) => p.held).map((p) => p.rate);
    const top = mine.reduce((a, b) => (b.rate > a.rate ? b : a));
    console.log(
      `\n${n} server(s): largest rate held ${held.length === 0 ? 'none' : `${fmtInt(Math.max(...held))} log events/s`}; ` +
        `goal 6 (p99 <= 50 ms at 20,000/s): ${mine.some((p) => p.rate >= 20_000 && p.held) ? 'met' : 'NOT met'}. ` +
        `Redis commands per log event at ${fmtInt(top.rate)}/s (lifecycle events included, ${fmt(top.redis.calls / top.commandsPerEvent, 0)} log events): ${topList(top.redis, top.redis.calls / top.commandsPerEvent)}`,
    );
  }
}

export function reportEvents(events: LayoutResult[], subscribers: number): void {
  const half = `${Math.ceil(subscribers / 2)} + ${Math.floor(subscribers / 2)}`;
  console.log(`\n### Events to ${fmtInt(subscribers)} subscribers through Redis (two client processes of ${half})\n`);
  console.log('| server instances | deliveries/s (burst) | server CPU µs/delivery (burst, all instances) | rounds | p50 ms | p99 ms | max ms | p99 per pass | server fan-out of one event p50 / p99 ms |');
  console.log('|---:|---:|---:|---|---:|---:|---:|---|---:|');
  for (const e of events) {
    console.log(
      `| ${e.instances} | ${fmtInt(e.perSec)} | ${fmt(e.cpuPerDelivery, 3)} | ${e.rounds.map((r) => fmt(r, 3)).join(', ')} | ` +
        `${fmt(e.p50, 2)} | ${fmt(e.p99, 2)} | ${fmt(e.max, 2)} | ${e.passes.map((p) => fmt(p.p99, 1)).join(', ')} | ${fmt(e.fanOutP50, 2)} / ${fmt(e.fanOutP99, 2)} |`,
    );
  }
  const one = events.find((e) => e.instances === 1);
  const two = events.find((e) => e.instances === 2);
  if (one !== undefined && two !== undefined) {
    console.log(
      `\ntwo instances / one: deliveries/s ${fmt(two.perSec / one.perSec, 2)}x, CPU per delivery ${fmt(two.cpuPerDelivery / one.cpuPerDelivery, 2)}x, ` +
        `p99 ${fmt(two.p99 / one.p99, 2)}x, server fan-out of one event p50 ${fmt(two.fanOutP50 / one.fanOutP50, 2)}x ` +
        `(latency: the higher of the two client processes, fan-out: the higher instance, in each pass; medians over passes)`,
    );
  }
}
