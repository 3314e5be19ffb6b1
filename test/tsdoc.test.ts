/**
 * TSDoc on every export: of the public entry points (`flowcast`, `flowcast/client`,
 * `flowcast/server`, `flowcast/redis`), what an editor shows a user when they hover a
 * name, and of every module in src/, what a contributor reads first. The tests list
 * every export without a doc comment.
 */
import { readdirSync, statSync } from 'node:fs';
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

  it('every exported declaration of every module in src/ has a doc comment', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = `${dir}/${name}`;
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts')) files.push(path);
      }
    };
    walk(ROOT + 'src');
    const program = ts.createProgram(files, { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true });
    program.getTypeChecker(); // binds the files: JSDoc is read through parent links
    const missing: string[] = [];
    for (const file of files) {
      const sf = program.getSourceFile(file);
      if (sf === undefined) continue;
      for (const statement of sf.statements) {
        const modifiers = ts.canHaveModifiers(statement) ? ts.getModifiers(statement) : undefined;
        if (modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) !== true || ts.isExportDeclaration(statement)) continue;
        if (ts.getJSDocCommentsAndTags(statement).length > 0) continue;
        const { line } = sf.getLineAndCharacterOfPosition(statement.getStart());
        missing.push(`${file.slice(ROOT.length)}:${line + 1}: ${statement.getText().split('\n')[0]?.slice(0, 100) ?? ''}`);
      }
    }
    expect(missing).toEqual([]);
  }, 120_000);
});
