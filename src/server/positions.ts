/**
 * Positions of pipeline and `*` subscriptions in their run stream (src/transport/run-streams.ts):
 * a subscription that asks for them (`positions: true`, or `offset` to resume) gets a
 * `position` message for each run that starts or ends, in offset order with no gap, and
 * resumes after the last one it got. A `position` of a run's start always comes before any
 * event of that run on the connection (the hub holds a run's first events until then), so
 * a client's offset says exactly which runs it knows: on resume, the server replays from
 * seq 1 the runs that started after it (and the client resumes the runs it knows with
 * `since`), and nothing reaches it twice.
 */
import type { RunMarker, RunStreamName, RunStreams } from '../transport/run-streams.js';
import type { Connection, Subscription } from './connection.js';
import type { PositionMessage } from './protocol.js';

/** Markers read from a run stream per page. */
const PAGE = 1000;

/** What {@link Positions} needs of the hub. */
export interface PositionsHost {
  canRead(conn: Connection, pipelineId: string): boolean;
  /**
   * The connection learns of a run from its stream: from now on it follows it, after
   * seq `after` (0: from its first event; a resumed run: from its PipelineResumeEvent).
   * `replay`: the run may be under way (a marker read from the stream): send what its log holds.
   */
  follow(conn: Connection, runId: string, pipelineId: string, replay: boolean, after: number): Promise<void> | void;
  onError(error: unknown, where: string): void;
}

/** Where a positioned subscription resumes: the answer for `subscribed`. */
export interface PositionStart {
  /** Positions follow from `offset + 1`. */
  offset: number;
  epoch: string;
  /** For a resume (`offset` asked): whether it resumes from there. */
  recovered?: boolean;
  /** Why not: `epoch` (another history), `trimmed` (markers after the offset are gone), `unknown` (an offset the stream never reached). */
  reason?: 'epoch' | 'trimmed' | 'unknown';
}

interface State {
  conn: Connection;
  stream: RunStreamName;
  /** The last offset accounted for (sent, or of a run this connection may not read). */
  offset: number;
  /** Work under way (the opening replay, a catch-up): live markers wait in `buffer`. */
  busy: number;
  buffer: RunMarker[];
  /** Work runs one at a time, in order; the first waits for {@link Positions.replay} (after `subscribed`). */
  queue: Promise<void>;
  /** Lets the queue go: called by {@link Positions.replay}. */
  start: () => void;
  /** Until the opening replay is done, every run read from the stream is followed from its log. */
  opened: boolean;
  closed: boolean;
}

/** The positioned subscriptions of one hub. */
export class Positions {
  readonly #runs: RunStreams;
  readonly #host: PositionsHost;
  readonly #states = new WeakMap<Subscription, State>();
  readonly #byConn = new Map<Connection, Set<State>>();
  readonly #byStream = new Map<RunStreamName, { off: () => void; states: Set<State> }>();

  constructor(runs: RunStreams, host: PositionsHost) {
    this.#runs = runs;
    this.#host = host;
  }

  /**
   * Positions a pipeline (or `*`) subscription: reads where its stream stands, and says
   * where positions follow from (`requested`: the offset and epoch of a resume). Live
   * markers wait until {@link replay} ran.
   */
  async open(conn: Connection, sub: Subscription, requested: { offset: number | undefined; epoch: string | undefined }): Promise<PositionStart> {
    this.close(conn, sub);
    const stream = sub.kind === 'all' ? '*' : sub.id;
    let start!: () => void;
    const gate = new Promise<void>((resolve) => (start = resolve));
    const state: State = { conn, stream, offset: 0, busy: 1, buffer: [], queue: gate, start, opened: false, closed: false };
    this.#states.set(sub, state);
    let mine = this.#byConn.get(conn);
    if (mine === undefined) {
      mine = new Set();
      this.#byConn.set(conn, mine);
    }
    mine.add(state);
    let upstream = this.#byStream.get(stream);
    if (upstream === undefined) {
      const states = new Set<State>();
      upstream = { states, off: this.#runs.subscribe(stream, (marker) => this.#onMarker(states, marker)) };
      this.#byStream.set(stream, upstream);
    }
    upstream.states.add(state);
    const head = await this.#runs.read(stream, { after: Number.MAX_SAFE_INTEGER });
    const answer: PositionStart = { offset: head.last_offset, epoch: head.epoch };
    const asked = requested.offset;
    if (asked !== undefined) {
      const reason =
        requested.epoch !== undefined && requested.epoch !== head.epoch ? 'epoch' : asked > head.last_offset ? 'unknown' : asked + 1 < head.first_offset ? 'trimmed' : null;
      answer.recovered = reason === null;
      if (reason === null) answer.offset = asked;
      else answer.reason = reason;
    }
    state.offset = answer.offset;
    return answer;
  }

  /**
   * After `subscribed`: sends the markers after the subscription's offset (the runs that
   * started after it are followed from their first event), then the live ones.
   */
  replay(sub: Subscription): Promise<void> {
    const state = this.#states.get(sub);
    if (state === undefined) return Promise.resolve();
    // `open` counted this work already: live markers have waited for it since.
    const done = this.#schedule(state, true, false).then(() => {
      state.opened = true;
    });
    state.start();
    return done;
  }

  /**
   * Resolves once every position of this connection covering `pipelineId` is level with
   * its stream: the hub calls it before the first event of a run the connection has not
   * been told of, so that the run's `position` goes first.
   */
  catchUp(conn: Connection, pipelineId: string): Promise<void> {
    const mine = this.#byConn.get(conn);
    if (mine === undefined) return Promise.resolve();
    const work: Promise<void>[] = [];
    for (const state of mine) if (state.stream === '*' || state.stream === pipelineId) work.push(this.#schedule(state, false, true));
    return Promise.all(work).then(() => undefined);
  }

  /** `true` when a positioned subscription of this connection covers the pipeline. */
  covers(conn: Connection, pipelineId: string): boolean {
    const mine = this.#byConn.get(conn);
    if (mine === undefined) return false;
    for (const state of mine) if (state.stream === '*' || state.stream === pipelineId) return true;
    return false;
  }

  /** The subscription is gone (unsubscribed, or subscribed again). */
  close(conn: Connection, sub: Subscription): void {
    const state = this.#states.get(sub);
    if (state === undefined) return;
    this.#states.delete(sub);
    this.#drop(state);
  }

  /** The connection is gone. */
  remove(conn: Connection): void {
    const mine = this.#byConn.get(conn);
    if (mine === undefined) return;
    for (const state of [...mine]) this.#drop(state);
  }

  /** Drops every positioned subscription (the hub closes). */
  clear(): void {
    for (const mine of [...this.#byConn.values()]) for (const state of [...mine]) this.#drop(state);
  }

  #drop(state: State): void {
    state.closed = true;
    state.start();
    const mine = this.#byConn.get(state.conn);
    mine?.delete(state);
    if (mine?.size === 0) this.#byConn.delete(state.conn);
    const upstream = this.#byStream.get(state.stream);
    if (upstream === undefined) return;
    upstream.states.delete(state);
    if (upstream.states.size > 0) return;
    upstream.off();
    this.#byStream.delete(state.stream);
  }

  #onMarker(states: Set<State>, marker: RunMarker): void {
    // The same message for every subscription of the stream: serialised once.
    let json: Buffer | null = null;
    const frame = (state: State): Buffer => (json ??= positionJson(state.stream, marker));
    for (const state of states) {
      if (state.closed || state.conn.state !== 'open') continue;
      if (state.busy > 0) {
        state.buffer.push(marker);
      } else if (marker.offset === state.offset + 1) {
        void this.#forward(state, marker, false, frame);
      } else if (marker.offset > state.offset) {
        // Pub/Sub lost some: read them from the stream.
        state.buffer.push(marker);
        void this.#schedule(state, false, true);
      }
    }
  }

  /**
   * Queues a read of the stream to its end, then of the buffered live markers. `replay`:
   * the runs that start in what is read are followed from their first event (they may be
   * under way); `count`: this work is not counted in `busy` yet.
   */
  #schedule(state: State, replay: boolean, count: boolean): Promise<void> {
    if (state.closed) return Promise.resolve();
    if (count) state.busy++;
    const done = state.queue.then(() => this.#level(state, replay));
    state.queue = done.catch((error: unknown) => {
      if (!state.closed) this.#host.onError(error, `reading the run stream ${state.stream}`);
      // Given up: the next live marker past a gap tries again.
      state.busy = Math.max(0, state.busy - 1);
    });
    return state.queue;
  }

  async #level(state: State, asked: boolean): Promise<void> {
    const replay = asked || !state.opened;
    for (;;) {
      const read = await this.#runs.read(state.stream, { after: state.offset, limit: PAGE });
      if (state.closed || state.conn.state !== 'open') return this.#idle(state);
      for (const marker of read.markers) {
        if (marker.offset <= state.offset) continue;
        await this.#forward(state, marker, replay);
        if (state.closed || state.conn.state !== 'open') return this.#idle(state);
      }
      if (read.markers.length >= PAGE) continue;
      if (this.#settle(state)) return;
    }
  }

  /**
   * Sends the buffered live markers that follow; `true` once done (the state is idle, or
   * other work is queued), `false` when a gap means reading the stream again.
   */
  #settle(state: State): boolean {
    state.buffer.sort((a, b) => a.offset - b.offset);
    while (state.buffer.length > 0) {
      const marker = state.buffer[0] as RunMarker;
      if (marker.offset > state.offset + 1) return false;
      state.buffer.shift();
      if (marker.offset === state.offset + 1) void this.#forward(state, marker, false);
    }
    this.#idle(state);
    return true;
  }

  #idle(state: State): void {
    state.busy = Math.max(0, state.busy - 1);
  }

  /** One marker to the connection (nothing for a run it may not read), and the run followed when it starts. */
  #forward(state: State, marker: RunMarker, replay: boolean, frame: (state: State) => Buffer = (st) => positionJson(st.stream, marker)): Promise<void> | void {
    state.offset = marker.offset;
    if (!this.#host.canRead(state.conn, marker.pipeline_id)) return;
    state.conn.send(frame(state), null);
    if (marker.kind === 'start') return this.#host.follow(state.conn, marker.run_id, marker.pipeline_id, replay, 0);
    if (marker.kind === 'resume') return this.#host.follow(state.conn, marker.run_id, marker.pipeline_id, replay, (marker.seq ?? 1) - 1);
  }
}

/** A `position` message (docs/protocol.md). */
function positionJson(stream: RunStreamName, marker: RunMarker): Buffer {
  const message: PositionMessage = { type: 'position', stream, offset: marker.offset, kind: marker.kind, run_id: marker.run_id, pipeline_id: marker.pipeline_id };
  if (marker.seq !== undefined) message.resume_seq = marker.seq;
  return Buffer.from(JSON.stringify(message));
}
