/**
 * The Start form's model: a pipeline's input JSON Schema read as a list of fields when it
 * is flat (an object of string, number, integer, boolean or enum properties), else
 * `null` (the form falls back to a JSON editor). Values are kept as the text or the
 * checkbox state the inputs hold, and turned into the input object on submit.
 */

/** One field of a flat input schema. */
export interface Field {
  name: string;
  kind: 'string' | 'number' | 'integer' | 'boolean' | 'enum';
  required: boolean;
  /** For `enum`: the allowed values (strings, numbers or booleans), in order. */
  options: (string | number | boolean)[];
  default: unknown;
  description: string | null;
  minimum: number | null;
  maximum: number | null;
}

/** What a field's input holds: text (string, number, integer, enum: the option's index or "") or a checkbox. */
export type FieldValue = string | boolean;

type Schema = Record<string, unknown>;

const isObject = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);
const isScalar = (v: unknown): v is string | number | boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

/** The enum values of `enum: [...]`, `const`, or an `anyOf`/`oneOf` of consts (TypeBox unions of literals). */
function enumValues(p: Schema): (string | number | boolean)[] | null {
  if (Array.isArray(p.enum)) return p.enum.every(isScalar) ? p.enum : null;
  const list = Array.isArray(p.anyOf) ? p.anyOf : Array.isArray(p.oneOf) ? p.oneOf : null;
  if (list === null || list.length === 0) return null;
  const out: (string | number | boolean)[] = [];
  for (const item of list as unknown[]) {
    if (!isObject(item) || !isScalar(item.const)) return null;
    out.push(item.const);
  }
  return out;
}

/** The fields of a flat object schema, or `null` when the form must be a JSON editor. */
export function flatFields(schema: unknown): Field[] | null {
  if (!isObject(schema) || schema.type !== 'object' || !isObject(schema.properties)) return null;
  const required = new Set(Array.isArray(schema.required) ? (schema.required as unknown[]).filter((r): r is string => typeof r === 'string') : []);
  const fields: Field[] = [];
  for (const [name, p] of Object.entries(schema.properties)) {
    if (!isObject(p)) return null;
    const options = enumValues(p);
    let kind: Field['kind'];
    if (options !== null) kind = 'enum';
    else if (p.type === 'string' || p.type === 'number' || p.type === 'integer' || p.type === 'boolean') kind = p.type;
    else return null;
    fields.push({
      name,
      kind,
      required: required.has(name),
      options: options ?? [],
      default: p.default,
      description: typeof p.description === 'string' ? p.description : null,
      minimum: typeof p.minimum === 'number' ? p.minimum : null,
      maximum: typeof p.maximum === 'number' ? p.maximum : null,
    });
  }
  return fields;
}

/** The input's starting value: its default, else empty (unchecked). */
export function initialValue(f: Field): FieldValue {
  if (f.kind === 'boolean') return f.default === true;
  if (f.kind === 'enum') {
    const at = f.options.findIndex((o) => o === f.default);
    return at >= 0 ? String(at) : f.required && f.options.length > 0 ? '0' : '';
  }
  return isScalar(f.default) ? String(f.default) : '';
}

/**
 * The input object of the form's values. Empty optional fields are left out; numbers are
 * parsed (a text that is not one is sent as is, for the server to refuse with its message).
 */
export function inputOf(fields: Field[], values: Record<string, FieldValue>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = values[f.name] ?? initialValue(f);
    if (f.kind === 'boolean') {
      out[f.name] = v === true;
      continue;
    }
    const text = typeof v === 'string' ? v : '';
    if (text === '' && !f.required) continue;
    if (f.kind === 'enum') out[f.name] = text === '' ? null : f.options[Number(text)];
    else if (f.kind === 'string') out[f.name] = text;
    else out[f.name] = text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
  }
  return out;
}

/** The field a server message names (`input.count must be …`), if any. */
export function fieldOfMessage(message: string, fields: Field[]): string | null {
  const m = /\binput\.([A-Za-z0-9_$]+)/.exec(message) ?? /^([A-Za-z0-9_$]+) is required/.exec(message);
  const name = m?.[1];
  return name !== undefined && fields.some((f) => f.name === name) ? name : null;
}

/** A fresh idempotency key (works outside secure contexts, where `crypto.randomUUID` is missing). */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `dashboard-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}
