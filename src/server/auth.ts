import type { IncomingMessage } from 'node:http';
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWTPayload } from 'jose';
import { InvalidArgumentError } from '../core/errors.js';
import { checkKnownKeys, checkObject } from '../core/validate.js';

/** Who is connected: what `authenticate` returns. */
export interface Principal {
  /** A stable id (user, service, key name). */
  id: string;
  /** Pipelines this principal may read: `"*"` or a list. @default "*" */
  pipelines?: '*' | string[];
  /** Actions beyond reading (`"cancel"`, `"delete"`, `"retry"`). @default [] */
  actions?: Action[];
  /** Anything else the application keeps (claims...). */
  [key: string]: unknown;
}

/** What a principal may do with a pipeline's runs. */
export type Action = 'read' | 'cancel' | 'delete' | 'retry';

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
   * Claim listing the readable pipelines (array of ids, or "*").
   * @default "pipelines"
   */
  pipelinesClaim?: string;
  /** Claim listing the allowed actions. @default "actions" */
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

function stringList(value: unknown): string[] | '*' | undefined {
  if (value === '*') return '*';
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
  return undefined;
}

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
      checkKnownKeys(checkObject(jwt, 'auth.jwt'), ['secret', 'publicKey', 'algorithms', 'issuer', 'audience', 'pipelinesClaim', 'actionsClaim'], 'auth.jwt');
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
   */
  async authenticate(request: IncomingMessage): Promise<Principal | null | false> {
    if (!this.enabled) return null;
    const found = extractToken(request);
    if (found === null) return false;
    const { token } = found;
    const byKey = this.#options.apiKeys?.[token];
    if (byKey !== undefined && Object.prototype.hasOwnProperty.call(this.#options.apiKeys, token)) return byKey;
    if (this.#key !== null) {
      const p = await this.#verifyJwt(token);
      if (p !== null) return p;
    }
    if (this.#options.authenticate !== undefined) {
      try {
        const p = await this.#options.authenticate(token, request);
        if (p !== null && typeof p === 'object' && typeof p.id === 'string') return p;
      } catch {
        return false;
      }
    }
    return false;
  }

  async #verifyJwt(token: string): Promise<Principal | null> {
    const jwt = this.#options.jwt as JwtOptions;
    try {
      const verifyOptions: Parameters<typeof jwtVerify>[2] = { algorithms: this.#algorithms };
      if (jwt.issuer !== undefined) verifyOptions.issuer = jwt.issuer;
      if (jwt.audience !== undefined) verifyOptions.audience = jwt.audience;
      const { payload } = await jwtVerify(token, this.#key as KeyObject, verifyOptions);
      return principalFromClaims(payload, jwt);
    } catch {
      return null;
    }
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
    const pipelines = principal.pipelines ?? '*';
    const readable = pipelines === '*' || pipelines.includes(pipelineId);
    if (action === 'read') return readable;
    return readable && (principal.actions ?? []).includes(action);
  }
}

function principalFromClaims(payload: JWTPayload, jwt: JwtOptions): Principal {
  const pipelines = stringList(payload[jwt.pipelinesClaim ?? 'pipelines']) ?? '*';
  const actions = stringList(payload[jwt.actionsClaim ?? 'actions']);
  const p: Principal = { ...payload, id: typeof payload.sub === 'string' ? payload.sub : 'jwt', pipelines };
  p.actions = actions === undefined || actions === '*' ? (actions === '*' ? ['read', 'cancel', 'delete', 'retry'] : []) : (actions.filter((a) => a === 'read' || a === 'cancel' || a === 'delete' || a === 'retry'));
  return p;
}
