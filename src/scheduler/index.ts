/** The scheduler: cron, interval and one-off firings of pipelines and functions. */
export { PipelineScheduler, MAX_CATCH_UP } from './scheduler.js';
export type {
  PipelineSchedulerOptions,
  SchedulerBroker,
  PipelineLike,
  ScheduleContext,
  ScheduledFunction,
  ScheduleTarget,
  ScheduleKind,
  OverlapPolicy,
  ScheduleInfo,
  CronScheduleOptions,
  IntervalScheduleOptions,
  OnceScheduleOptions,
} from './scheduler.js';
export type { ClusterScheduleSpec, ClusterFire, ScheduleDriver, ClusterSchedulerBroker } from './cluster.js';
