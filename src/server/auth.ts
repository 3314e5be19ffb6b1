import type { IncomingMessage } from 'node:http';
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject, show } from '../core/validate.js';

/** Who is connected: what `authenticate` returns. */
export interface Principal {
  /** A stable id (user, service, key name). */
  id: string;
  /**
   * Pipelines this principal may read: `"*"` or a list. Left out, everything (the
   * principal comes from your own configuration); any other value reads nothing.
   * JWTs always get an explicit value (see {@link JwtOptions.defaultPipelines}).
   * @default "*"
   */
  pipelines?: '*' | string[];
  /** Actions beyond reading (`"start"`, `"cancel"`, `"delete"`, `"retry"`, `"resume"`). @default [] */
  actions?: Action[];
  /** Anything else the application keeps (claims...). */
  [key: string]: unknown;
}

/** What a principal may do with a pipeline's runs. */
export type Action = 'read' | 'start' | 'cancel' | 'delete' | 'retry' | 'resume';

/** Built-in JWT verification (jose). */
export interface JwtOptions {
  /** HS256 shared secret. */
  secret?: string;
  /** RS256 public key (PEM). */
  publicKey?: string;
  /** @default ["HS256"] with `secret`, ["RS256"] with `publicKey` */
  algorithms?: string[];
  issuer?: string;
  audience?: string;
  /**
   * Claim listing the readable pipelines: an array of pipeline ids, or exactly `"*"`.
   * A token whose claim is anything else (another string, non-strings, an object,
   * `null`) is refused. See {@link JwtOptions.defaultPipelines} for tokens without it.
   * @default "pipelines"
   */
  pipelinesClaim?: string;
  /**
   * What a valid token *without* the pipelines claim may read. Fail closed: no pipeline,
   * unless the deployment says otherwise (`"*"` or a list; CLI `--jwt-default-pipelines`).
   * @default []
   */
  defaultPipelines?: '*' | string[];
  /** Claim listing the allowed actions (an array of action names, or `"*"`); a malformed one refuses the token. @default "actions" */
  actionsClaim?: string;
}

/** Options of the server's `auth`. With none of them, every connection is anonymous and may read everything. */
export interface AuthOptions {
  /** Static API keys: key → principal. */
  apiKeys?: Record<string, Principal>;
  /** JWT bearer tokens (HS256 / RS256). */
  jwt?: JwtOptions;
  /** Your own check: token → principal, or `null` to reject. Tried after API keys and JWT. */
  authenticate?: (token: string, request: IncomingMessage) => Principal | null | Promise<Principal | null>;
  /**
   * Your own rule. Synchronous: it is asked once per connection and pipeline, then cached.
   * @default the principal's `pipelines` and `actions`
   */
  authorize?: (principal: Principal | null, pipelineId: string, action: Action) => boolean;
}

/** Where a token was found. */
export type TokenSource = 'query' | 'header' | 'protocol';

/** The subprotocol prefix that carries a token: offer `["flowcast", "flowcast.bearer." + token]`. */
export const BEARER_PROTOCOL_PREFIX = 'flowcast.bearer.';

/** Finds the token of a request: `?token=`, `Authorization: Bearer`, or a `flowcast.bearer.<token>` subprotocol. */
export function extractToken(request: IncomingMessage): { token: string; source: TokenSource } | null {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m?.[1] !== undefined) return { token: m[1], source: 'header' };
  }
  const url = new URL(request.url ?? '/', 'http://localhost');
  const q = url.searchParams.get('token');
  if (q !== null && q !== '') return { token: q, source: 'query' };
  const protocols = request.headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    for (const p of protocols.split(',').map((s) => s.trim())) {
      if (p.startsWith(BEARER_PROTOCOL_PREFIX) && p.length > BEARER_PROTOCOL_PREFIX.length) {
        return { token: p.slice(BEARER_PROTOCOL_PREFIX.length), source: 'protocol' };
      }
    }
  }
  return null;
}

/** A claim that must be `"*"` or an array of strings: the value, or `null` when it is anything else. */
function stringList(value: unknown): string[] | '*' | null {
  if (value === '*') return '*';
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  return null;
}

/** A principal's `pipelines`, checked: anything but `"*"` or a list of strings reads nothing (fail closed). */
function readablePipelines(principal: Principal): '*' | readonly string[] {
  const value = principal.pipelines;
  if (value === undefined) return '*';
  return stringList(value) ?? [];
}

/** The outcome of {@link Authenticator.check}: a principal (`null`: auth is off), or the reason a request is refused (`claim`: a verified token with a malformed claim). */
export type AuthResult = { ok: true; principal: Principal | null } | { ok: false; reason: string; claim?: true };

/** A JWT that verified but whose claims cannot be read safely. */
class ClaimError extends Error {}

/** Authentication and authorisation as configured; `enabled` is false when no option asks for tokens. */
export class Authenticator {
  readonly enabled: boolean;
  readonly #options: AuthOptions;
  readonly #key: KeyObject | null;
  readonly #algorithms: string[];

  constructor(options: AuthOptions = {}) {
    checkKnownKeys(checkObject(options, 'auth'), ['apiKeys', 'jwt', 'authenticate', 'authorize'], 'auth');
    this.#options = options;
    this.enabled = options.apiKeys !== undefined || options.jwt !== undefined || options.authenticate !== undefined;
    const jwt = options.jwt;
    if (jwt === undefined) {
      this.#key = null;
      this.#algorithms = [];
    } else {
      checkKnownKeys(checkObject(jwt, 'auth.jwt'), ['secret', 'publicKey', 'algorithms', 'issuer', 'audience', 'pipelinesClaim', 'actionsClaim', 'defaultPipelines'], 'auth.jwt');
      if (jwt.defaultPipelines !== undefined && stringList(jwt.defaultPipelines) === null) {
        throw new InvalidArgumentError(`auth.jwt.defaultPipelines must be "*" or an array of pipeline ids, received ${show(jwt.defaultPipelines)}`);
      }
      if ((jwt.secret === undefined) === (jwt.publicKey === undefined)) {
        throw new InvalidArgumentError('auth.jwt needs exactly one of "secret" (HS256) and "publicKey" (RS256)');
      }
      this.#key = jwt.secret !== undefined ? createSecretKey(Buffer.from(jwt.secret)) : createPublicKey(jwt.publicKey as string);
      this.#algorithms = jwt.algorithms ?? (jwt.secret !== undefined ? ['HS256'] : ['RS256']);
    }
  }

  /**
   * The principal of a request: `null` when auth is disabled (anonymous, reads
   * everything), a Principal when the token is accepted, `false` when it is rejected.
   * {@link check} says why.
   */
  async authenticate(request: IncomingMessage): Promise<Principal | null | false> {
    const result = await this.check(request);
    return result.ok ? result.principal : false;
  }

  /** Like {@link authenticate}, with the reason of a refusal (one line, safe to show the client). */
  async check(request: IncomingMessage): Promise<AuthResult> {
    if (!this.enabled) return { ok: true, principal: null };
    const found = extractToken(request);
    if (found === null) return { ok: false, reason: 'no token: send Authorization: Bearer <token>, ?token= or the flowcast.bearer.<token> subprotocol' };
    const { token } = found;
    const byKey = this.#options.apiKeys?.[token];
    if (byKey !== undefined && Object.prototype.hasOwnProperty.call(this.#options.apiKeys, token)) return { ok: true, principal: byKey };
    if (this.#key !== null) {
      try {
        const p = await this.#verifyJwt(token);
        if (p !== null) return { ok: true, principal: p };
      } catch (error) {
        if (error instanceof ClaimError) return { ok: false, reason: error.message, claim: true };
        throw error;
      }
    }
    if (this.#options.authenticate !== undefined) {
      try {
        const p = await this.#options.authenticate(token, request);
        if (p !== null && typeof p === 'object' && typeof p.id === 'string') return { ok: true, principal: p };
      } catch {
        return { ok: false, reason: 'invalid token' };
      }
    }
    return { ok: false, reason: 'invalid token' };
  }

  async #verifyJwt(token: string): Promise<Principal | null> {
    const jwt = this.#options.jwt as JwtOptions;
    let payload: JWTPayload;
    try {
      const verifyOptions: Parameters<typeof jwtVerify>[2] = { algorithms: this.#algorithms };
      if (jwt.issuer !== undefined) verifyOptions.issuer = jwt.issuer;
      if (jwt.audience !== undefined) verifyOptions.audience = jwt.audience;
      ({ payload } = await jwtVerify(token, this.#key as KeyObject, verifyOptions));
    } catch {
      return null;
    }
    return principalFromClaims(payload, jwt);
  }

  /** May `principal` do `action` on `pipelineId`? */
  authorize(principal: Principal | null, pipelineId: string, action: Action): boolean {
    if (this.#options.authorize !== undefined) {
      try {
        return this.#options.authorize(principal, pipelineId, action) === true;
      } catch {
        return false;
      }
    }
    if (!this.enabled) return true;
    if (principal === null) return false;
    const pipelines = readablePipelines(principal);
    const readable = pipelines === '*' || pipelines.includes(pipelineId);
    if (action === 'read') return readable;
    return readable && (principal.actions ?? []).includes(action);
  }
}

const ACTIONS: readonly Action[] = ['read', 'start', 'cancel', 'delete', 'retry', 'resume'];

/** The principal of a verified JWT; throws a {@link ClaimError} naming the claim when one is malformed (fail closed). */
function principalFromClaims(payload: JWTPayload, jwt: JwtOptions): Principal {
  const pipelinesClaim = jwt.pipelinesClaim ?? 'pipelines';
  const actionsClaim = jwt.actionsClaim ?? 'actions';
  let pipelines: '*' | string[];
  if (payload[pipelinesClaim] === undefined) {
    pipelines = jwt.defaultPipelines ?? [];
  } else {
    const list = stringList(payload[pipelinesClaim]);
    if (list === null) throw new ClaimError(`invalid token: claim "${pipelinesClaim}" must be a list of pipeline ids or "*", got ${describeClaim(payload[pipelinesClaim])}`);
    pipelines = list;
  }
  let actions: Action[] = [];
  if (payload[actionsClaim] !== undefined) {
    const list = stringList(payload[actionsClaim]);
    if (list === null) throw new ClaimError(`invalid token: claim "${actionsClaim}" must be a list of actions or "*", got ${describeClaim(payload[actionsClaim])}`);
    actions = list === '*' ? [...ACTIONS] : ACTIONS.filter((a) => list.includes(a));
  }
  return { ...payload, id: typeof payload.sub === 'string' ? payload.sub : 'jwt', pipelines, actions };
}

/** The kind of a claim's value, never the value itself (it may be long or private). */
function describeClaim(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array of non-strings';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
