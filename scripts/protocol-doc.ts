/**
 * Keeps the JSON Schema blocks of docs/protocol.md equal to the schemas in the code.
 * Each block follows a marker line `<!-- schema:Name -->`; this rewrites the fenced
 * block after each marker from `allProtocolSchemas()`. Run: `npm run docs:protocol`.
 * test/protocol-doc.test.ts fails when the document and the code disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TSchema } from '@sinclair/typebox';
import { allProtocolSchemas } from '../src/server/protocol-schemas.js';

const MARKER = /<!-- schema:([A-Za-z]+) -->\n```json\n[\s\S]*?\n```/g;

/** Plain JSON of a TypeBox schema (TypeBox's symbols dropped). */
export function schemaJson(schema: TSchema): string {
  return JSON.stringify(schema, null, 2);
}

/** The document with every schema block rewritten; throws when a schema has no marker or a marker no schema. */
export function renderProtocolDoc(text: string, schemas: Record<string, TSchema> = allProtocolSchemas()): string {
  const seen = new Set<string>();
  const out = text.replace(MARKER, (_block, name: string) => {
    const schema = schemas[name];
    if (schema === undefined) throw new Error(`docs/protocol.md: marker schema:${name} names no schema`);
    seen.add(name);
    return `<!-- schema:${name} -->\n\`\`\`json\n${schemaJson(schema)}\n\`\`\``;
  });
  const missing = Object.keys(schemas).filter((name) => !seen.has(name));
  if (missing.length > 0) throw new Error(`docs/protocol.md has no schema block for: ${missing.join(', ')}`);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));
  const before = readFileSync(file, 'utf8');
  const after = renderProtocolDoc(before);
  if (after !== before) writeFileSync(file, after);
  console.log(after === before ? 'docs/protocol.md is up to date' : 'docs/protocol.md rewritten');
}
