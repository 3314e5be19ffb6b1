/**
 * The OpenAPI 3.1 document of the server's HTTP API, built from the same TypeBox
 * schemas Fastify validates requests with (OpenAPI 3.1 schemas are JSON Schema).
 */
import { readFileSync } from 'node:fs';
import type { TSchema } from '@sinclair/typebox';
import type { RouteDoc } from './rest/common.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Plain JSON of a TypeBox schema (its symbol keys dropped). */
function plain(schema: TSchema): JsonObject {
  return JSON.parse(JSON.stringify(schema)) as JsonObject;
}

/** Replaces every nested schema with a known `$id` by a `$ref` to its component. */
function refs(value: Json, components: ReadonlySet<string>, top: boolean): Json {
  if (Array.isArray(value)) return value.map((v) => refs(v, components, false));
  if (value === null || typeof value !== 'object') return value;
  const id = value.$id;
  if (!top && typeof id === 'string' && components.has(id)) return { $ref: `#/components/schemas/${id}` };
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) if (k !== '$id') out[k] = refs(v, components, false);
  return out;
}

/** Collects the schemas with an `$id` (at any depth) as components. */
function collect(value: Json, into: Map<string, JsonObject>): void {
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (typeof value.$id === 'string' && !into.has(value.$id)) into.set(value.$id, value);
  for (const v of Object.values(value)) collect(v, into);
}

function parameters(schema: TSchema | undefined, where: 'query' | 'path'): JsonObject[] {
  if (schema === undefined) return [];
  const s = plain(schema);
  const props = (s.properties ?? {}) as Record<string, JsonObject>;
  const required = new Set((s.required ?? []) as string[]);
  return Object.entries(props).map(([name, prop]) => {
    const { description, ...rest } = prop;
    const p: JsonObject = { name, in: where, required: where === 'path' || (required.has(name) && rest.default === undefined), schema: rest };
    if (typeof description === 'string') p.description = description;
    return p;
  });
}

/** Options of {@link buildOpenApi}. */
export interface OpenApiOptions {
  /** The server takes tokens: operations that need one say so. */
  auth: boolean;
}

/** The OpenAPI 3.1 document of `routes`. */
export function buildOpenApi(routes: readonly RouteDoc[], options: OpenApiOptions): JsonObject {
  const schemas = new Map<string, JsonObject>();
  for (const r of routes) for (const res of Object.values(r.responses)) if (res.schema !== undefined) collect(plain(res.schema), schemas);
  for (const r of routes) if (r.body !== undefined) collect(plain(r.body), schemas);
  const names = new Set(schemas.keys());
  const paths: Record<string, JsonObject> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{path}');
    const responses: JsonObject = {};
    for (const [code, res] of Object.entries(r.responses)) {
      const answer: JsonObject = { description: res.description };
      if (res.schema !== undefined) {
        const type = code === '200' ? (r.contentType ?? 'application/json') : 'application/json';
        answer.content = { [type]: { schema: refs(plain(res.schema), names, false) } };
      } else if (code === '200' && r.contentType !== undefined) {
        answer.content = { [r.contentType]: { schema: { type: 'string' } } };
      }
      if (code === '429') answer.headers = { 'Retry-After': { description: 'Seconds to wait', schema: { type: 'integer' } } };
      responses[code] = answer;
    }
    const op: JsonObject = {
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_s, c: string | undefined) => (c ?? '').toUpperCase())}`,
      summary: r.summary,
      tags: [r.tag],
      responses,
    };
    if (r.description !== undefined) op.description = r.description;
    const params = [...parameters(r.params, 'path'), ...parameters(r.querystring, 'query')];
    if (params.length > 0) op.parameters = params;
    if (r.body !== undefined) op.requestBody = { required: false, content: { 'application/json': { schema: refs(plain(r.body), names, false) } } };
    op.security = r.auth && options.auth ? [{ bearer: [] }, { token: [] }] : [];
    const item = (paths[path] ??= {});
    item[r.method.toLowerCase()] = op;
  }
  const components: JsonObject = {
    schemas: Object.fromEntries([...schemas].map(([name, s]) => [name, refs(s, names, true)])),
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'An API key or a JWT, as configured in the server\'s auth option.' },
      token: { type: 'apiKey', in: 'query', name: 'token', description: 'The same token as a query parameter (for EventSource and links).' },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'flowcast server',
      version: packageVersion(),
      description:
        'Runs, their status, events and statistics; live events over WebSocket (docs/protocol.md) and SSE. Errors are { "error": { "code", "message" } }.',
    },
    paths,
    components,
  };
}
