/**
 * TSDoc on every export of the public entry points (`flowcast`, `flowcast/client`,
 * `flowcast/server`, `flowcast/redis`): what an editor shows a user when they hover a
 * name. The test lists every export without a doc comment.
 */
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENTRIES = ['src/index.ts', 'src/client/index.ts', 'src/server/index.ts', 'src/redis/index.ts'];

function undocumented(): string[] {
  const program = ts.createProgram(
    ENTRIES.map((e) => ROOT + e),
    { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true, skipLibCheck: true },
  );
  const checker = program.getTypeChecker();
  const missing = new Set<string>();
  for (const entry of ENTRIES) {
    const file = program.getSourceFile(ROOT + entry);
    const moduleSymbol = file === undefined ? undefined : checker.getSymbolAtLocation(file);
    if (moduleSymbol === undefined) throw new Error(`no module symbol for ${entry}`);
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const declarations = symbol.getDeclarations() ?? [];
      // Only the project's own declarations (a re-exported library type is documented by its library).
      const own = declarations.filter((d) => d.getSourceFile().fileName.startsWith(ROOT + 'src/'));
      if (own.length === 0) continue;
      const documented = symbol.getDocumentationComment(checker).length > 0 || own.some((d) => ts.getJSDocTags(d).length > 0 || ts.getJSDocCommentsAndTags(d).length > 0);
      if (!documented) {
        const d = own[0] as ts.Declaration;
        const sf = d.getSourceFile();
        const { line } = sf.getLineAndCharacterOfPosition(d.getStart());
        missing.add(`${exported.getName()} (${sf.fileName.slice(ROOT.length)}:${line + 1})`);
      }
    }
  }
  return [...missing].sort();
}

describe('TSDoc', () => {
  it('every export of the public entry points has a doc comment', () => {
    expect(undocumented()).toEqual([]);
  }, 120_000);
});
